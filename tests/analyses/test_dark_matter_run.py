"""End to end on a random-weight model: build SAEs from interp's cache, run(), save/load, figures, CLI contract."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from analyses.dark_matter import Config, DarkMatterResult, run
from apps.build.saes import BuildConfig, build
from interp.errors import ConfigError

TOKENIZER = Path(__file__).resolve().parents[2] / "data" / "tokenizer" / "tokenizer.json"


def _model() -> torch.nn.Module:
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(TOKENIZER.parent))
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=2, d_head=8, d_mlp=64, d_vocab=len(tok),
                                  n_ctx=128, act_fn="gelu", normalization_type="LN", seed=0, device="cpu",
                                  positional_embedding_type="rotary", rotary_dim=8, default_prepend_bos=False)
    return HookedTransformer(cfg, tokenizer=tok).eval()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    if not TOKENIZER.is_file():
        pytest.skip("embedded tokenizer not present")
    torch.manual_seed(0)
    model = _model()
    texts = [f"def f{i}(x):\n    return x * {i} + {i % 7}\n" * 3 for i in range(200)]
    out = tmp_path_factory.mktemp("saes")
    build(BuildConfig(out=str(out), layer=1, topk_expansions=[1, 2, 4], jumprelu_expansions=[2],
                      component_expansion=1, k=4, tokens=4096, training_tokens=8192,
                      component_training_tokens=2048, batch_size=512, lr=3e-3, storage_dtype="float16"),
          model=model, texts=texts)
    return {"model": model, "out": out}


def test_build_index(built) -> None:
    import json

    index = json.loads((built["out"] / "index.json").read_text())
    names = {e["name"] for e in index["saes"]}
    assert {"L1_resid_topk_x1", "L1_resid_topk_x4", "L1_resid_jumprelu_x2", "L1_attn_z_topk_x1"} <= names
    z = next(e for e in index["saes"] if e["component"] == "attn_z")  # hook_z [heads=2, d_head=8], flattened
    assert z["hook"] == "blocks.1.attn.hook_z" and z["d_in"] == z["d_sae"] == 16
    assert all(e["l0_train"] <= 4 + 1e-6 for e in index["saes"] if e["architecture"] == "topk")


def test_run_end_to_end(built, tmp_path) -> None:
    cfg = Config(model="random", saes=str(built["out"]), layer=1, n_tokens=2048, ctx=64, positions="range:2:63",
                 pursuit_tokens=128, synthetic_tokens=512, synthetic_sigmas=[0.0, 1.0, 2.0], downstream_blocks=4,
                 trace_tokens=40)
    res = run(cfg, model=built["model"])
    s = res.summary
    assert s["n_tokens"] == 32 * 61 and s["reference_sae"].startswith("L1_resid_topk")
    rows = res.details["saes"]
    assert len(rows) == 4
    for r in rows:  # linear part fitted on train rows cannot hurt much on held-out rows; identity holds
        assert r["fvu_sae_plus_linear"] <= r["fvu_sae"] + 1e-3
        assert -0.05 < r["r2_vec"] <= 1 and r["fvu_sae"] > 0
    assert np.asarray(res.arrays["per_token_r2_topk"]).shape == (3, 3)
    assert set(res.details["downstream_loss"]) >= {"clean", "sae", "sae_plus_linear", "sae_plus_nonlinear"}
    dl = res.details["downstream_loss"]
    assert math.isfinite(dl["clean"]) and dl["n_scored"] == 4 * 61
    assert len(res.details["introduced_error"]["grid"]) == 9
    assert {"prev_resid:sae_recon", "mlp_out:sae_recon", "attn_z:sae_recon"} <= set(
        res.details["cross_component"]["r2"])
    assert len(res.details["pursuit"]) == 4 and len(res.details["trace_tokens"]) == 40
    assert len(res.findings) == 4 and all(f.consistent() for f in res.findings)
    assert res.findings[0].measured == pytest.approx(s["r2_norm"])  # each finding cites the number it names
    res.save(tmp_path / "r")
    back = DarkMatterResult.load(tmp_path / "r")
    assert back.summary["r2_vec"] == pytest.approx(s["r2_vec"])
    assert [f.verdict for f in back.findings] == [f.verdict for f in res.findings]
    figs = back.figures()
    assert {"scaling", "norm_prediction", "per_token_r2_topk", "token_trace", "cross_component"} <= set(figs)
    trace = figs["token_trace"].data[0]
    assert len(trace.text) == 40
    res.details["saes"][0]["l0"] = float("nan")  # saved as null: hover text says n/a instead of failing
    nan_figs = DarkMatterResult.load(res.save(tmp_path / "nan")).figures()
    assert set(nan_figs) == set(figs) and "L0=n/a" in nan_figs["scaling"].data[0].text[0]


def test_spliced_identity(built) -> None:
    """Splicing x̂ + linear + nonlinear = x must give the clean loss: checks the hook's row bookkeeping."""
    from analyses.dark_matter.data import collect
    from analyses.dark_matter.method import decompose_sae_error
    from analyses.dark_matter.splice import downstream_loss

    cfg = Config(n_tokens=640, ctx=64, positions="range:2:63", layer=1)
    data = collect(built["model"], cfg, 1)
    x = data.acts["resid"]
    rec = x + 0.5 * x.std() * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    dec = decompose_sae_error(x, rec)
    dec.linear_error = dec.linear_error + dec.nonlinear_error  # so that rec + "linear" = x exactly
    out = downstream_loss(built["model"], data, "blocks.1.hook_resid_post", rec, dec, n_blocks=10, batch_size=3)
    assert abs(out["sae_plus_linear"] - out["clean"]) < 1e-4
    assert abs(out["sae"] - out["clean"]) > 1e-3


def test_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError):
        Config(r2_convention="nope").validate()
    with pytest.raises(ConfigError):
        Config(train_frac=1.5).validate()
    with pytest.raises(ConfigError):
        run(Config(saes=str(tmp_path)), model=_model())


def test_run_from_a_cache_of_whole_sequences_equals_captured(built, tmp_path) -> None:
    """model -> extract -> cache -> analysis: a positions-'all' cache of the same tokens gives the captured run's
    numbers, with the position selection, per-token loss and spliced-loss study intact."""
    from analyses.dark_matter.data import collect, component_hooks
    from interp.extract import ExtractConfig, extract

    model = built["model"]
    hooks = [h for c, h in component_hooks(1).items() if c != "attn_out"]
    extract(ExtractConfig(out=str(tmp_path / "c"), model="random", data="embedded", tokens=1024, ctx=64,
                          batch_size=8, hooks=hooks), model=model, progress=False)
    kw = dict(n_tokens=1024, ctx=64, positions="range:2:63", layer=1, batch_size=8)
    captured = collect(model, Config(**kw), 1, ("resid", "prev_resid", "mlp_out", "attn_z"))
    cached = collect(model, Config(cache=str(tmp_path / "c"), **kw), 1, ("resid", "prev_resid", "mlp_out", "attn_z"))
    assert cached.source.startswith("cache:") and torch.equal(cached.blocks, captured.blocks)
    assert torch.equal(cached.row_mask, captured.row_mask) and torch.equal(cached.seq_pos, captured.seq_pos)
    for name, x in captured.acts.items():
        assert torch.allclose(cached.acts[name], x, rtol=1e-5, atol=1e-6), name
    assert torch.allclose(cached.token_loss, captured.token_loss, equal_nan=True)
    with pytest.raises(ConfigError, match="blocks of 64 tokens"):
        collect(model, Config(cache=str(tmp_path / "c"), **{**kw, "ctx": 32}), 1, ("resid",))
