"""Score a model on the planted-feature probes: pairwise ranking accuracy and the occupation skew it learned."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from interp.toy import corpus

LogitsFn = Callable[[list[list[int]]], torch.Tensor]  # token-id lists -> last-position logits [n, d_vocab]


def hf_logits_fn(model, batch: int = 64) -> LogitsFn:
    """Last-position logits of a Hugging Face causal LM (left-padded batches, explicit position ids)."""
    dev = next(model.parameters()).device

    @torch.no_grad()
    def fn(seqs: list[list[int]]) -> torch.Tensor:
        order = sorted(range(len(seqs)), key=lambda j: len(seqs[j]))  # similar lengths per batch: less padding
        outs = []
        for i in range(0, len(seqs), batch):
            chunk = [seqs[j] for j in order[i:i + batch]]
            n = max(len(s) for s in chunk)
            ids = torch.full((len(chunk), n), 1, dtype=torch.long)
            mask = torch.zeros((len(chunk), n), dtype=torch.long)
            for j, s in enumerate(chunk):
                ids[j, n - len(s):] = torch.tensor(s)
                mask[j, n - len(s):] = 1
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            out = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev)).logits
            outs.append(out[:, -1].float().cpu())
        res = torch.empty((len(seqs), outs[0].shape[-1]))
        res[torch.tensor(order)] = torch.cat(outs)
        return res

    return fn


def tl_logits_fn(model) -> LogitsFn:
    """Last-position logits of a transformer-lens HookedTransformer (one prompt at a time: no padding issues)."""

    @torch.no_grad()
    def fn(seqs: list[list[int]]) -> torch.Tensor:
        dev = model.cfg.device
        return torch.stack([model(torch.tensor([s], device=dev))[0, -1].float().cpu() for s in seqs])

    return fn


def load_probes(path: Path | None = None) -> list[dict]:
    """The shipped probes (data/corpus/probes.jsonl by default)."""
    from interp.toy.build import DATA_DIR

    return corpus.read_jsonl(Path(path or DATA_DIR / "corpus" / "probes.jsonl"))


def probe_margins(logits_fn: LogitsFn, tokenizer, probes: Sequence[dict]) -> torch.Tensor:
    """logit(answer) - logit(distractor) per probe [n_probes] (float32)."""
    seqs = [tokenizer.encode(p["prompt"], add_special_tokens=False) for p in probes]
    logits = logits_fn(seqs)
    a = torch.tensor([p["answer_id"] for p in probes])
    d = torch.tensor([p["distractor_id"] for p in probes])
    rows = torch.arange(len(probes))
    return logits[rows, a] - logits[rows, d]


def evaluate_probes(logits_fn: LogitsFn, tokenizer, probes: Sequence[dict] | None = None) -> dict:
    """Per-feature accuracy (answer ranked above distractor) and per-occupation mean P(she | she or he).

    For occupation probes the 'answer' is the planted majority pronoun, so accuracy there measures the skew
    direction; `occupation_p_female` compares the model's P(she)/(P(she)+P(he)) with the planted p_female.
    """
    probes = load_probes() if probes is None else list(probes)
    margins = probe_margins(logits_fn, tokenizer, probes)
    hits: dict[str, list[bool]] = defaultdict(list)
    occ: dict[str, list[float]] = defaultdict(list)
    for p, m in zip(probes, margins.tolist()):
        hits[p["feature"]].append(m > 0)
        if p["feature"] == "occupation_pronoun":
            # margin = logit(major) - logit(minor); convert to P(she | {she, he})
            p_major = 1.0 / (1.0 + torch.exp(torch.tensor(-m)).item())
            occ[p["occupation"]].append(p_major if p["answer"] == " she" else 1.0 - p_major)
    planted = {p["occupation"]: p["p_female"] for p in probes if p["feature"] == "occupation_pronoun"}
    return {
        "accuracy": {f: sum(h) / len(h) for f, h in sorted(hits.items())},
        "n": {f: len(h) for f, h in sorted(hits.items())},
        "occupation_p_female": {o: {"planted": planted[o], "model": sum(v) / len(v)} for o, v in sorted(occ.items())},
    }


def evaluate_checkpoint(folder: Path, tokenizer_dir: Path | None = None, probes_path: Path | None = None,
                        device: str = "cpu") -> dict:
    """Probe scores of one saved checkpoint folder, loaded in float32 with transformers."""
    from transformers import GPTNeoXForCausalLM

    from interp.toy.build import DATA_DIR
    from interp.toy.tokenizer import load_tokenizer

    tok = load_tokenizer(Path(tokenizer_dir or DATA_DIR / "tokenizer"))
    model = GPTNeoXForCausalLM.from_pretrained(str(folder), dtype=torch.float32).to(device).eval()
    return evaluate_probes(hf_logits_fn(model), tok, load_probes(probes_path))


def main(argv: list[str] | None = None) -> None:
    """`python -m interp.toy.evaluate CHECKPOINT_FOLDER... [--device D]`: print probe scores as JSON."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    print(json.dumps({str(f): evaluate_checkpoint(f, device=args.device) for f in args.folders}, indent=1))


if __name__ == "__main__":
    main()
