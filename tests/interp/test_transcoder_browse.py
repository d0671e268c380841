"""Transcoder latents in a sparse cache and in the latent browser, on the embedded model `toy-pythia-4l`.

Extraction (`interp extract --hooks IN --sparse topk --sae TC` and its Python form): the cache's latents are
`tc.encode` of a plain dense capture of the INPUT hook (same top-k ids, same values to float32 rounding), and the
manifest spec names the transcoder and its output hook. The browser's data against brute-force numpy from the
cache's densified latents (top-k contexts with the tie rule, histograms, density: exact), logit effects against
W_dec · W_U in float64 (W_dec writes the output hook), and the error correlation against ‖y − ŷ‖ at the OUTPUT hook
from the dense cache (ŷ = A W_dec + b_dec, + x W_skipᵀ for a skip transcoder). Refusals: `--hooks` naming the
output hook (one line naming both hooks, before the model loads), logit effects without d_out = d_model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from apps.cli import main
from browser_support import histogram_bins, value_range
from interp.browser import build_browser
from interp.cache import open_cache
from interp.cache.sparse_formats import read_sparse
from interp.encode import sparse_hook_formats
from interp.errors import ConfigError
from interp.extract import ExtractConfig, extract
from interp.saes import save_sae
from interp.transcoders import TopKSkipTranscoder, TopKSkipTranscoderConfig, TopKTranscoder, TopKTranscoderConfig

IN, OUT = "blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out"
D_SAE, K, TOKENS, CTX = 48, 6, 2048, 64
K_TOP, N_BINS, NQ, S = 5, 12, 3, 2


def _save_transcoder(path, d_in: int, d_out: int, skip: bool = False, seed: int = 0, hook_out: str = OUT):
    torch.manual_seed(seed)
    common = dict(d_in=d_in, d_sae=D_SAE, d_out=d_out, k=K, apply_b_dec_to_input=False)
    tc = TopKSkipTranscoder(TopKSkipTranscoderConfig(**common)) if skip else TopKTranscoder(
        TopKTranscoderConfig(**common))
    with torch.no_grad():
        for name, p in tc.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if name in ("W_enc", "b_enc") else 0.05))
    return save_sae(tc, path, storage_dtype="float32", metadata={"hook_name": IN, "hook_name_out": hook_out})


def _dense(reader, hook: str) -> np.ndarray:
    """The sparse hook's latents as a dense float32 [rows, d_sae] matrix."""
    s = read_sparse(reader, hook)
    A = np.zeros((s.n_rows, int(reader.spec(hook)["d_sae"])), dtype=np.float32)
    A[s.row_ids().numpy(), s.flat_idx().long().numpy()] = s.flat_val().float().numpy()
    return A


@pytest.fixture(scope="module")
def toy():
    from interp.models import load

    return load("toy-pythia-4l")


@pytest.fixture(scope="module")
def run(toy, tmp_path_factory):
    """A transcoder and a skip transcoder, their latents extracted at IN (float32 values), and IN and OUT densely."""
    from interp.saes import load_sae

    root = tmp_path_factory.mktemp("tc")
    d = int(toy.cfg.d_model)
    common = dict(model="toy-pythia-4l", data="embedded", tokens=TOKENS, ctx=CTX, batch_size=8, shard_mb=0.05)
    out = {"root": root}
    for name, skip in (("tc", False), ("skip", True)):
        path = _save_transcoder(root / name, d, d, skip=skip, seed=int(skip))
        hooks, formats = sparse_hook_formats(toy, ["blocks.*.hook_resid_post"], "topk", sae=str(path),
                                             value_dtype="float32")
        assert hooks == [IN]  # the extract default picks the transcoder's input hook
        extract(ExtractConfig(out=str(root / f"{name}-cache"), hooks=hooks, formats=formats, **common), model=toy,
                progress=False)
        out[name] = (path, root / f"{name}-cache", load_sae(path))
    extract(ExtractConfig(out=str(root / "dense"), hooks=[IN, OUT], **common), model=toy, progress=False)
    out["dense"] = root / "dense"
    return out


def test_manifest_names_the_transcoder_and_its_output_hook(run):
    path, cache, _ = run["tc"]
    spec = open_cache(cache).spec(IN)
    assert spec["sae"] == str(path) and spec["transcoder"] is True and spec["hook_out"] == OUT
    assert spec["format"] == "topk" and spec["k"] == K and spec["d_sae"] == D_SAE
    assert json.loads((cache / "manifest.json").read_text())  # the spec is part of the written manifest
    assert OUT not in open_cache(cache).hooks


@pytest.mark.parametrize("name", ["tc", "skip"])
def test_cached_latents_are_the_encoder_of_the_input_hook(run, name):
    """Top-k ids equal and values equal (float32 rounding) to tc.encode of the dense capture of IN."""
    _, cache, tc = run[name]
    X = torch.from_numpy(np.asarray(open_cache(run["dense"]).read(IN, 0, None), dtype=np.float32))
    want = tc.encode(X).detach().numpy()
    got = _dense(open_cache(cache), IN)
    assert got.shape == want.shape == (TOKENS, D_SAE)
    assert np.array_equal(got != 0, want != 0)
    assert ((got != 0).sum(1) == K).all()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_cli_extract_matches_the_python_path(run, tmp_path):
    path, cache, _ = run["tc"]
    out = tmp_path / "cli"
    rc = main(["extract", "--model", "toy-pythia-4l", "--hooks", IN, "--sparse", "topk", "--sae", str(path),
               "--data", "embedded", "--tokens", str(TOKENS), "--ctx", str(CTX), "--out", str(out), "--quiet"])
    assert rc == 0
    r = open_cache(out)
    assert r.spec(IN)["hook_out"] == OUT and r.spec(IN)["dtype"] == "bfloat16"
    want = _dense(open_cache(cache), IN)
    got = _dense(r, IN)
    assert np.array_equal(got != 0, want != 0)
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-3)  # bfloat16 values


def test_output_hook_is_refused_in_one_line_before_the_model_loads(run, tmp_path, capsys, monkeypatch):
    path, _, _ = run["tc"]
    rc = main(["extract", "--model", "no_such_module_xyz:make", "--hooks", OUT, "--sparse", "topk", "--sae",
               str(path), "--data", "embedded", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 2 and IN in err and OUT in err, err
    assert len([ln for ln in err.splitlines() if "error" in ln]) == 1 and not (tmp_path / "c").exists()
    from interp.encode import sparse_spec

    calls = []
    monkeypatch.setattr("interp.extract.load", lambda *a, **k: calls.append(a))
    spec = sparse_spec("topk", sae=str(path))
    with pytest.raises(ConfigError, match="output hook") as e:  # the Python form: extract(formats=...)
        extract(ExtractConfig(out=str(tmp_path / "p"), hooks=[OUT], formats={OUT: spec}), progress=False)
    assert IN in e.value.message and OUT in e.value.message and calls == []


@pytest.fixture(scope="module")
def built(run, toy):
    path, cache, _ = run["tc"]
    site, ld, ex = build_browser(path, cache, run["root"] / "site", model=toy, dense_cache=run["dense"],
                                 k_top=K_TOP, n_bins=N_BINS, n_quantiles=NQ, per_quantile=S, n_neighbours=4,
                                 n_logits=5, device="cpu", return_data=True)
    return site, ld, ex, _dense(open_cache(cache), IN)


def test_browser_top_k_histogram_and_density_exact(built):
    _, ld, _, A = built
    assert np.array_equal(ld.count, (A != 0).sum(0))
    lo, hi = value_range(A)
    assert np.array_equal(ld.lo, lo) and np.array_equal(ld.hi, hi)
    for j in range(D_SAE):
        rows = np.nonzero(A[:, j])[0]
        order = np.lexsort((rows, -A[rows, j]))[:K_TOP]
        want = np.full(K_TOP, -1)
        want[: len(order)] = rows[order]
        assert np.array_equal(ld.top_rows[j], want), j
        np.testing.assert_array_equal(ld.top_vals[j][: len(order)], A[rows[order], j])
        v = A[rows, j]
        h = np.bincount(histogram_bins(v, lo[j], hi[j], N_BINS), minlength=N_BINS) if v.size else np.zeros(N_BINS, int)
        assert np.array_equal(ld.hist[j], h), j
    assert (ld.count > 0).sum() > D_SAE // 2  # most latents fire: the comparison is not vacuous


def test_logit_effects_are_the_decoder_into_the_output_hook_times_W_U(built, run, toy):
    _, _, ex, _ = built
    tc = run["tc"][2]
    eff = tc.W_dec.detach().double().numpy() @ toy.W_U.detach().double().numpy()
    for j in range(D_SAE):
        np.testing.assert_allclose(ex.logits["pos"][j], np.sort(eff[j])[::-1][:5], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ex.logits["neg"][j], np.sort(eff[j])[:5], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(eff[j, ex.logits["pos_ids"][j]], ex.logits["pos"][j], rtol=1e-5, atol=1e-6)
    W = tc.W_dec.detach().double().numpy()
    Wn = W / np.linalg.norm(W, axis=1, keepdims=True)
    cos = Wn @ Wn.T
    np.fill_diagonal(cos, -np.inf)
    np.testing.assert_allclose(ex.neighbours[1], -np.sort(-cos, axis=1)[:, :4], atol=1e-5)


def _meta(site) -> dict:
    """data/meta.js of a site: `window.__interpChunk("meta",{...});`."""
    return json.loads((site / "data" / "meta.js").read_text().split(",", 1)[1].rsplit(");", 1)[0])


def _err_corr(A, w, Y, X=None):
    pred = A.astype(np.float64) @ w["W_dec"] + w["b_dec"]
    if X is not None:
        pred = pred + X.astype(np.float64) @ w["W_skip"].T
    err = np.linalg.norm(Y.astype(np.float64) - pred, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.array([np.corrcoef(A[:, j], err)[0, 1] if A[:, j].any() else np.nan for j in range(A.shape[1])])


def test_error_correlation_is_the_prediction_error_at_the_output_hook(built, run):
    site, ld, ex, A = built
    tc = run["tc"][2]
    Y = np.asarray(open_cache(run["dense"]).read(OUT, 0, None), dtype=np.float32)
    w = {k: getattr(tc, k).detach().double().numpy() for k in ("W_dec", "b_dec")}
    want = _err_corr(A, w, Y)
    fired = ~np.isnan(want)
    np.testing.assert_allclose(ld.err_corr[fired], want[fired], atol=1e-6)
    assert OUT in _meta(site)["err_label"] and "prediction-error" in _meta(site)["err_label"]  # the page's label
    X = np.asarray(open_cache(run["dense"]).read(IN, 0, None), dtype=np.float32)
    against_input = _err_corr(A, w, X[:, : w["W_dec"].shape[1]])  # the SAE formula at the input hook differs
    assert np.nanmax(np.abs(against_input - ld.err_corr)) > 1e-2
    meta = _meta(site)
    assert f"transcoder: {IN} \u2192 {OUT}" in meta["subtitle"] and meta["has_err"] and not ex.notes["logit"]
    assert "textContent=m.subtitle" in site.joinpath("index.html").read_text()  # the page shows it under its title


def test_skip_transcoder_error_needs_the_input_hook_too(run, toy, tmp_path):
    path, cache, tc = run["skip"]
    _, ld, _ = build_browser(path, cache, tmp_path / "s", model=False, dense_cache=run["dense"], k_top=2, n_bins=4,
                             n_quantiles=2, per_quantile=1, device="cpu", return_data=True)
    r = open_cache(run["dense"])
    A = _dense(open_cache(cache), IN)
    w = {k: getattr(tc, k).detach().double().numpy() for k in ("W_dec", "b_dec", "W_skip")}
    want = _err_corr(A, w, np.asarray(r.read(OUT, 0, None)), np.asarray(r.read(IN, 0, None)))
    fired = ~np.isnan(want)
    np.testing.assert_allclose(ld.err_corr[fired], want[fired], atol=1e-6)
    no_skip = _err_corr(A, {k: w[k] for k in ("W_dec", "b_dec")}, np.asarray(r.read(OUT, 0, None)))
    assert np.nanmax(np.abs(no_skip - ld.err_corr)) > 1e-3  # the skip term matters here
    # without a dense cache: no correlation, and the note names the hooks it needs
    _, ld2, ex2 = build_browser(path, cache, tmp_path / "s2", model=False, k_top=2, n_bins=4, n_quantiles=2,
                                per_quantile=1, device="cpu", return_data=True)
    assert ld2.err_corr is None and OUT in ex2.notes["err"] and IN in ex2.notes["err"]


def test_wider_output_omits_logit_effects_with_a_note_and_cli_browse(run, toy, tmp_path, capsys):
    """A transcoder into blocks.1.mlp.hook_post (d_mlp wide): no logit effects (the note says why), no error
    correlation (the dense cache lacks its output hook); `interp browse` builds the d_model one's site."""
    _, cache, _ = run["tc"]
    d_mlp = int(toy.cfg.d_mlp)
    wide = _save_transcoder(tmp_path / "tc", int(toy.cfg.d_model), d_mlp, hook_out="blocks.1.mlp.hook_post")
    _, ld, ex = build_browser(wide, cache, tmp_path / "w", model=toy, dense_cache=run["dense"], k_top=2, n_bins=4,
                              n_quantiles=2, per_quantile=1, device="cpu", return_data=True)
    assert ex.logits is None and f"d_out {d_mlp}" in ex.notes["logit"] and "blocks.1.mlp.hook_post" in ex.notes["err"]
    assert ld.err_corr is None
    path = run["tc"][0]
    rc = main(["browse", "--sae", str(path), "--cache", str(cache), "--dense-cache", str(run["dense"]),
               "--out", str(tmp_path / "cli"), "--model", "toy-pythia-4l", "--k-top", "2", "--bins", "4",
               "--quantiles", "2", "--per-quantile", "1", "--device", "cpu"])
    assert rc == 0 and (tmp_path / "cli" / "index.html").is_file(), capsys.readouterr().err
    assert f"transcoder: {IN} \u2192 {OUT}" in _meta(tmp_path / "cli")["subtitle"]
