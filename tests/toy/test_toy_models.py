"""Shipped embedded suites: layout, offline loading, HF == HookedTransformer, learned planted features, budget."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from interp.toy import corpus
from interp.toy.evaluate import evaluate_probes, hf_logits_fn, load_probes
from interp.toy.tokenizer import load_tokenizer
from interp.toy.train import SUITES, checkpoint_steps

DATA = Path(__file__).resolve().parents[2] / "data"
MODELS = DATA / "models"
SHIPPED = [s for s in SUITES if (MODELS / s / "suite.json").is_file()]
needs_models = pytest.mark.skipif(len(SHIPPED) < len(SUITES), reason="embedded suites not trained yet")


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _info(suite: str) -> dict:
    return json.loads((MODELS / suite / "suite.json").read_text())


def _hf(suite: str, step: int):
    from transformers import GPTNeoXForCausalLM

    return GPTNeoXForCausalLM.from_pretrained(str(MODELS / suite / f"step{step}"), dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(DATA / "tokenizer")


def test_toy_data_budget():
    """All of data/ <= 50 MB; the embedded default (tokenizer, corpus, models) <= its 30 MB share."""
    assert _dir_bytes(DATA) <= 50 * 1024**2, f"data/ is {_dir_bytes(DATA) / 1e6:.1f} MB"
    default = ("toy-pythia-2l", "toy-pythia-4l")  # the sparsity suites are that analysis's share (data/README.md)
    ours = sum(_dir_bytes(d) for d in [DATA / "tokenizer", DATA / "corpus", *(MODELS / s for s in default)]
               if d.exists())
    assert ours <= 30 * 1024**2, f"embedded default is {ours / 1e6:.1f} MB"


@needs_models
@pytest.mark.parametrize("suite", sorted(SUITES))
def test_toy_suite_layout_matches_suite_json(suite):
    import interp.models as im

    info = _info(suite)
    steps = sorted(int(p.name[4:]) for p in (MODELS / suite).glob("step*"))
    assert steps == info["steps"] == im.checkpoints(suite)
    first = info["train"].get("first_checkpoint", 0)
    assert steps == [s for s in checkpoint_steps(info["final_step"], info["train"]["late_checkpoints"])
                     if s == 0 or s >= first]
    assert set(info["heldout_loss"]) == {str(s) for s in steps}
    assert suite in im.embedded_names() and im.DEFAULT_MODEL == "toy-pythia-4l"
    for s in steps:
        assert {p.name for p in (MODELS / suite / f"step{s}").iterdir()} == {"config.json", "model.safetensors"}


def _check_conversion(suite: str, steps: list[int], tok) -> float:
    """interp.models.load (HookedTransformer) logits == transformers GPT-NeoX forward (fp32) to 1e-4; returns the
    largest difference over the steps."""
    import interp.models as im

    texts = [r["text"] for r in corpus.read_jsonl(DATA / "corpus" / "heldout.jsonl")[:8]]
    x = torch.tensor([ids[:48] for ids in (tok.encode(t, add_special_tokens=False) for t in texts)
                      if len(ids) >= 48][:2])
    worst = 0.0
    for step in steps:
        with torch.no_grad():
            ref = _hf(suite, step)(input_ids=x).logits
            got = im.load(suite, step=step)(x)
        err = (got - ref).abs().max().item()
        assert err < 1e-4, (suite, step)
        worst = max(worst, err)
    return worst


@needs_models
@pytest.mark.parametrize("suite", sorted(SUITES))
def test_toy_checkpoints_convert_exactly(suite, tok):
    """Step 0, 512 and the final step (all steps: the slow test below)."""
    assert _check_conversion(suite, [0, 512, _info(suite)["final_step"]], tok) < 1e-4


@needs_models
@pytest.mark.slow
@pytest.mark.parametrize("suite", sorted(SUITES))
def test_toy_every_checkpoint_converts_exactly(suite, tok):
    assert _check_conversion(suite, _info(suite)["steps"], tok) < 1e-4


@needs_models
@pytest.mark.parametrize("suite", sorted(SUITES))
def test_toy_heldout_loss_decreases(suite, tok):
    """final < step 512 < step 0, and step 0 is near ln(vocab) (a random init predicts ~uniformly)."""
    info = _info(suite)
    loss = {int(k): v for k, v in info["heldout_loss"].items()}
    assert loss[info["final_step"]] < loss[512] < loss[0]
    assert abs(loss[0] - math.log(len(tok))) < 0.3


def _check_learned(tok, probes: list[dict]) -> dict:
    """Pronouns and code language >= 95%; occupation skew ordered female > neutral > male in P(she | she, he)."""
    info = _info("toy-pythia-4l")
    res = evaluate_probes(hf_logits_fn(_hf("toy-pythia-4l", info["final_step"])), tok, probes)
    acc = res["accuracy"]
    for feat in ("pronoun_subj", "pronoun_obj", "code_block_opener", "code_comment_marker"):
        assert acc[feat] >= 0.95, (feat, acc[feat])
    occ = res["occupation_p_female"]
    fem = [v["model"] for v in occ.values() if v["planted"] > 0.5]
    mal = [v["model"] for v in occ.values() if v["planted"] < 0.5]
    neu = [v["model"] for v in occ.values() if v["planted"] == 0.5]
    assert min(fem) > max(neu) and min(neu) > max(mal)
    assert sum(fem) / len(fem) > 0.75 and sum(mal) / len(mal) < 0.25
    return res


@needs_models
def test_toy_default_model_learned_planted_features(tok):
    """Final toy-pythia-4l on the acceptance features (every other probe; all probes in the slow test)."""
    feats = {"pronoun_subj", "pronoun_obj", "code_block_opener", "code_comment_marker", "occupation_pronoun"}
    probes = [p for p in load_probes() if p["feature"] in feats]
    res = _check_learned(tok, [p for i, p in enumerate(probes) if i % 2 == 0 or p["feature"] == "occupation_pronoun"])
    assert min(res["accuracy"][f] for f in feats - {"occupation_pronoun"}) >= 0.95, res["accuracy"]


@needs_models
@pytest.mark.slow
def test_toy_default_model_learned_all_probes(tok):
    res = _check_learned(tok, load_probes())
    # occupation_pronoun "accuracy" is the majority pronoun winning, a coin flip for the 50/50 occupations
    assert min(a for f, a in res["accuracy"].items() if f != "occupation_pronoun") >= 0.95, res["accuracy"]


@needs_models
@pytest.mark.slow
def test_toy_recomputed_heldout_loss_matches_suite_json(tok):
    """Held-out loss of the final 4l checkpoint recomputed from the shipped files equals suite.json's."""
    from interp.toy.train import heldout_loss, pack_blocks

    info = _info("toy-pythia-4l")
    held = pack_blocks(tok, [r["text"] for r in corpus.read_jsonl(DATA / "corpus" / "heldout.jsonl")],
                       info["train"]["ctx"])
    got = heldout_loss(_hf("toy-pythia-4l", info["final_step"]), held)
    assert abs(got - info["heldout_loss"][str(info["final_step"])]) < 2e-3
