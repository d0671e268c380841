"""obsprop run(): the whole pipeline on a random model with the embedded corpus, and the embedded-model claims."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import assert_findings_cite_their_numbers

pytest.importorskip("transformer_lens")
from analyses.obsprop import Config, ObsPropResult, run  # noqa: E402
from interp.errors import ConfigError, InterpError  # noqa: E402

torch.set_num_threads(1)


def _corpus_ok() -> bool:
    try:
        from analyses.obsprop.prompts import corpus_dir

        corpus_dir()
        return True
    except InterpError:
        return False


def _embedded_ok() -> bool:
    try:
        from interp import models

        return models.DEFAULT_MODEL in models.embedded_names() and _corpus_ok()
    except Exception:
        return False


needs_corpus = pytest.mark.skipif(not _corpus_ok(), reason="embedded corpus (data/corpus) not present")
needs_embedded = pytest.mark.skipif(not _embedded_ok(), reason="embedded default model not present")


def test_config_validation():
    with pytest.raises(ConfigError):
        Config(ln_mode="bogus").validate()
    with pytest.raises(ConfigError):
        Config(n_train=0).validate()
    with pytest.raises(ConfigError):
        run(Config(), model=torch.nn.Linear(2, 2))


def test_score_scatter_is_svg_not_webgl():
    """The score scatter must draw without WebGL (a Scattergl plot is blank there); n_scatter is ~3000 points."""
    import numpy as np

    from analyses.obsprop.figures import build_figures

    rng = np.random.default_rng(0)
    figs = build_figures({"top_subj_head": "L1H2"}, {}, {"scatter_s1": rng.normal(size=3000),
                                                         "scatter_s2": rng.normal(size=3000)})
    trace = figs["score_scatter"].data[0]
    assert trace.type == "scatter" and len(trace.x) == 3000


@pytest.fixture(scope="module")
def rand_model():
    """A random float64 GPT-NeoX-shaped TL model with the embedded tokenizer."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from interp.models import load_tokenizer
    from interp.models.embedded import embedded_tokenizer_dir
    from interp.models.hf_local import load_hf_tokenizer

    try:
        tok = load_tokenizer()
    except InterpError:
        tok = load_hf_tokenizer(embedded_tokenizer_dir())
    cfg = HookedTransformerConfig(n_layers=2, d_model=64, n_heads=4, d_head=16, d_mlp=256, d_vocab=len(tok),
                                  n_ctx=128, act_fn="gelu", normalization_type="LN",
                                  positional_embedding_type="rotary", rotary_dim=4, seed=0, device="cpu",
                                  dtype=torch.float64, parallel_attn_mlp=True)
    return HookedTransformer(cfg, tokenizer=tok).eval()


@needs_corpus
def test_run_pipeline_on_random_model(tmp_path, rand_model):
    """Every task runs; the result round-trips through save/load and redraws its figures."""
    model = rand_model
    res = run(Config(score_tokens=4096, n_pairs=8, n_repeats=2, path_depth=2, beam=2, n_train=10), model=model)
    for key in ("cos_raw_subj_obj", "cos_heads_subj_obj_mean", "gender_cos_obsprop", "gender_cos_probe30",
                "coupling_top", "slope_top", "debias_bias_gap_after", "ln_cos_approx_exact_min"):
        assert isinstance(res.summary[key], float) and math.isfinite(res.summary[key]), key
    assert res.details["ln"]["random_y"]["perp_rel_err_max"] < 1e-4
    assert_findings_cite_their_numbers(res)
    for row in res.details["mlp"]:
        if row["boundary"]["crossed"]:
            assert row["boundary"]["residual"] < 1e-6
    # the coupling rows: the Σ-aware coupling is the OLS slope on the same data (up to the mean)
    for row in res.details["coupling"]:
        assert abs(row["coupling_cov"] - row["slope"]) < 1e-6 * max(1.0, abs(row["slope"]))
    res.save(tmp_path)
    back = ObsPropResult.load(tmp_path)
    assert back.summary["top_subj_head"] == res.summary["top_subj_head"]
    figs = back.figures()
    assert {"norms_subj", "coupling_vs_slope", "cos_top_head", "debias"} <= set(figs)
    res.summary["cos_raw_subj_obj"] = float("nan")  # saved as null: labels say n/a instead of failing
    nan_figs = ObsPropResult.load(res.save(tmp_path / "nan")).figures()
    assert set(nan_figs) == set(figs) and "n/a" in nan_figs["cos_subj_obj_heads"].layout.title.text


@needs_corpus
def test_scores_from_activation_cache_match_computed(tmp_path, rand_model):
    """Scoring over an interp activation cache (interp extract) gives the same slopes as computing in place."""
    from interp.extract import ExtractConfig, extract

    extract(ExtractConfig(out=str(tmp_path / "cache"), hooks=["blocks.*.hook_resid_pre"], tokens=2048, ctx=64,
                          batch_size=8), model=rand_model, progress=False)
    kw = dict(score_tokens=2048, ctx=64, n_pairs=8, n_repeats=2, path_depth=1, beam=1, top_heads=2, n_train=10)
    a = run(Config(**kw), model=rand_model)
    b = run(Config(cache=str(tmp_path / "cache"), **kw), model=rand_model)
    for ra, rb in zip(a.details["coupling"], b.details["coupling"]):
        assert ra["n"] == rb["n"] and abs(ra["slope"] - rb["slope"]) < 1e-4 * max(1.0, abs(ra["slope"]))


LIGHT = dict(n_pairs=32, score_tokens=16384, n_repeats=5, path_depth=1, n_gauss=20_000)


@pytest.fixture(scope="module")
def embedded_result():
    """A lighter run on the embedded default (fewer pairs/tokens/repeats; same claims)."""
    return run(Config(**LIGHT))


@needs_embedded
@pytest.mark.slow
def test_embedded_default_run_claims_and_runtime():
    """`run()` with no arguments: the three embedded claims and the self-checks (its runtime is not asserted: a
    loaded machine would fail a wall-clock bound)."""
    s = run().summary
    assert s["pronoun_features_more_similar"] and s["obsprop_beats_probe"] and s["coupling_predicts_slope"]
    assert s["first_order_max_rel_err"] < 1e-5 and s["dla_rel_err"] < 1e-5 and s["ov_identity_max_rel_err"] < 1e-5
    assert s["linear_mlp_max_rel_err"] < 1e-6 and s["linear_mlp_boundary_residual"] < 1e-6
    assert s["ln_cos_approx_exact_mean"] >= 0.98


@needs_embedded
def test_embedded_pronoun_features_more_similar_than_observables(embedded_result):
    """At the heads carrying the subject pronoun, cos(subj, obj) feature vectors > cos of the raw observables."""
    s = embedded_result.summary
    assert s["pronoun_features_more_similar"], (s["cos_heads_subj_obj_mean"], s["cos_raw_subj_obj"])


@needs_embedded
def test_embedded_obsprop_beats_30_30_probe(embedded_result):
    """Zero-shot ObsProp is closer to the planted gender direction than the 30+30 linear probe."""
    s = embedded_result.summary
    assert s["gender_cos_obsprop"] > s["gender_cos_probe30"], (s["gender_cos_obsprop"], s["gender_cos_probe30"])


@needs_embedded
def test_embedded_coupling_predicts_slope(embedded_result):
    """Coupling coefficient vs fitted slope of feature scores over held-out tokens, within 0.1."""
    s = embedded_result.summary
    assert s["coupling_slope_max_abs_err"] < 0.1, embedded_result.details["coupling"]


@needs_embedded
def test_embedded_ln_and_selfchecks(embedded_result):
    """On the embedded default's real LN inputs (d = 128): mean cos(approx, exact) ≥ 0.98 (derived √(1−2/d)), exact
    agreement on {1, x}^⟂; first-order exactness, OV identity/DLA and linear-MLP checks on the model itself."""
    d = embedded_result.details
    assert d["ln"]["random_y"]["cos_mean"] >= 0.98 and d["ln"]["random_y"]["perp_rel_err_max"] < 1e-4
    s = embedded_result.summary
    assert s["first_order_max_rel_err"] < 1e-5 and s["ov_identity_max_rel_err"] < 1e-5 and s["dla_rel_err"] < 1e-5
    assert s["linear_mlp_max_rel_err"] < 1e-6 and s["linear_mlp_boundary_residual"] < 1e-6
