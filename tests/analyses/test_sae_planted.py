"""Planted ground truth for the SAE loop: on the embedded model, the shipped L2 residual SAE has a latent that
separates the planted subject-pronoun gender (found from latents alone), and clamping it moves the model's
pronoun prediction in the planted direction (interp.intervene)."""

from __future__ import annotations

import json

import pytest
import torch

from interp.models import DEFAULT_MODEL, data_dir, embedded_names

needs_model = pytest.mark.skipif(DEFAULT_MODEL not in embedded_names(), reason="the embedded default is not in data/")
HOOK = "blocks.2.hook_resid_post"


@needs_model
def test_clamping_the_gender_latent_moves_the_pronoun_prediction():
    from interp.intervene import Edit, intervene
    from interp.models import load
    from interp.saes import load_sae

    model = load(DEFAULT_MODEL)
    sae = load_sae(data_dir() / "saes" / "toy-pythia-4l" / "L2_resid_topk_x4")
    probes = [json.loads(line) for line in (data_dir() / "corpus" / "probes.jsonl").read_text().splitlines()]
    rows = [r for r in probes if r["feature"] == "pronoun_subj"][:80]
    first = rows[0]
    she, he = ((first["answer_id"], first["distractor_id"]) if first["gender"] == "female"
               else (first["distractor_id"], first["answer_id"]))
    prompts = [torch.tensor([model.tokenizer(r["prompt"], add_special_tokens=False)["input_ids"]]) for r in rows]
    female = torch.tensor([r["gender"] == "female" for r in rows])
    with torch.no_grad():
        last = torch.stack([model.run_with_cache(p, names_filter=HOOK)[1][HOOK][0, -1] for p in prompts])
        f = sae.encode(last)
    # the latent that separates the planted feature best, from the latents alone
    gap = f[female].mean(0) - f[~female].mean(0)
    j = int(gap.argmax())
    fires = f[:, j] > 0
    assert female[fires].float().mean() >= 0.9, "the latent's firing prompts are >= 90 % the planted feature"
    level = float(f[female, j].mean())

    def she_minus_he(p: torch.Tensor, edits) -> tuple[float, float]:
        with intervene(model, sae=sae, edits=edits, keep_error=True) as iv:
            out = iv.run(p)
        logits = out.logits[0, -1]
        return float(logits[she] - logits[he]), float(out.clean_logits[0, -1, she] - out.clean_logits[0, -1, he])

    moved = []
    for p, is_f in zip(prompts, female.tolist()):
        if is_f:
            continue
        edited, clean = she_minus_he(p, [Edit([j], "clamp", 2 * level, positions=[p.shape[1] - 1])])
        moved.append(edited - clean)
    moved = torch.tensor(moved)
    assert (moved > 0).float().mean() >= 0.9 and float(moved.mean()) > 0.5, moved
    print(f"latent {j}: fires on {int(fires.sum())} prompts, {float(female[fires].float().mean()):.2f} female; "
          f"clamping it on male prompts moves logit(she) - logit(he) by {float(moved.mean()):+.2f} on average, "
          f"up on {float((moved > 0).float().mean()):.2f} of them")
