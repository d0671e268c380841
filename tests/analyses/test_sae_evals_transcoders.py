"""SAE evals of transcoders against independent computations on the embedded model.

Transcoders from blocks.1.ln2.hook_normalized (x) to blocks.1.hook_mlp_out (y) are fitted here in float64: random
encoder, f = act(x W_enc + b_enc) (ReLU, or TopK_k of ReLU), and the decoder by ridge least squares
[f, 1] -> y (a skip transcoder: [f, x, 1] -> y, so W_skip carries part of the prediction). The reference is a
hand-written transformer-lens loop in float64 from the weights alone:

    ŷ = f W_dec + b_dec (+ x W_skipᵀ),   FVU = Σ‖y − ŷ‖² / Σ‖y − ȳ‖²,   L0 = mean #{f ≠ 0}
    CE / KL with run_with_hooks: record x at the input hook, put ŷ at the output hook; zero and mean (ȳ) ablation
    of the output hook; CE recovered = (CE_b − CE_tc) / (CE_b − CE_clean).

Both transcoders sit in one index next to a shipped SAE (a mixed folder); a single transcoder folder runs alone too.
"""

from __future__ import annotations

import json

import pytest
import torch

from analyses.sae_evals import Config, SAEEvalsResult, run
from interp.models import DEFAULT_MODEL, embedded_names

needs_model = pytest.mark.skipif(DEFAULT_MODEL not in embedded_names(), reason="the embedded default is not in data/")

IN, OUT = "blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out"
CTX, N_EVAL, N_FIT, D_SAE, K = 64, 4, 48, 512, 24
SAE_NAME = "L2_mlp_out_topk_x4"


def _latents(tc, x: torch.Tensor) -> torch.Tensor:
    """f from the weights in x's dtype: ReLU(x W_enc + b_enc), for TopK transcoders only the k largest kept."""
    from interp.transcoders import TopKTranscoder

    pre = torch.relu(x @ tc.W_enc.to(x.dtype) + tc.b_enc.to(x.dtype))
    if isinstance(tc, TopKTranscoder):
        top = pre.topk(tc.cfg.k, dim=-1)
        pre = torch.zeros_like(pre).scatter(-1, top.indices, top.values)
    return pre


def _predict(tc, x: torch.Tensor, skip: bool = True) -> torch.Tensor:
    """ŷ = f W_dec + b_dec (+ x W_skipᵀ) in x's dtype."""
    out = _latents(tc, x) @ tc.W_dec.to(x.dtype) + tc.b_dec.to(x.dtype)
    return out + x @ tc.W_skip.T.to(x.dtype) if skip and hasattr(tc, "W_skip") else out


def _fit(kind: str, x: torch.Tensor, y: torch.Tensor, seed: int):
    """A transcoder x -> y: random encoder, decoder (and W_skip) by ridge least squares in float64."""
    from sae_lens import Transcoder, TranscoderConfig

    from interp.transcoders import TopKSkipTranscoder, TopKSkipTranscoderConfig

    d = x.shape[-1]
    common = dict(d_in=d, d_sae=D_SAE, d_out=y.shape[-1], apply_b_dec_to_input=False)
    tc = Transcoder(TranscoderConfig(**common)) if kind == "relu" else TopKSkipTranscoder(
        TopKSkipTranscoderConfig(k=K, **common))
    g = torch.Generator().manual_seed(seed)
    X, Y = x.reshape(-1, d).double(), y.reshape(-1, y.shape[-1]).double()
    with torch.no_grad():
        tc.W_enc.copy_(torch.randn(d, D_SAE, generator=g) / d ** 0.5)
        tc.b_enc.copy_(-0.5 * torch.rand(D_SAE, generator=g))
        tc.W_dec.zero_()
        if hasattr(tc, "W_skip"):
            tc.W_skip.zero_()
        F = _latents(tc, X)
        A = torch.cat([F, X, torch.ones(len(X), 1, dtype=X.dtype)] if kind != "relu" else
                      [F, torch.ones(len(X), 1, dtype=X.dtype)], 1)
        W = torch.linalg.solve(A.T @ A + 1e-3 * torch.eye(A.shape[1], dtype=A.dtype), A.T @ Y)
        tc.W_dec.copy_(W[:D_SAE])
        tc.b_dec.copy_(W[-1])
        if kind != "relu":
            tc.W_skip.copy_(W[D_SAE:D_SAE + d].T)
    tc.cfg.metadata.hook_name, tc.cfg.metadata.hook_name_out = IN, OUT
    return tc.eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The model, the eval blocks, two fitted transcoders saved in a mixed index with a shipped SAE, and the run."""
    from interp.models import data_dir, load
    from interp.saes import load_sae, save_sae
    from interp.sources import token_blocks

    model = load(DEFAULT_MODEL)
    blocks = token_blocks("embedded", model.tokenizer, ctx=CTX, n_tokens=(N_EVAL + N_FIT) * CTX)
    with torch.no_grad():
        cache = model.run_with_cache(blocks[N_EVAL:], names_filter=[IN, OUT])[1]  # fitted on other tokens
    folder = tmp_path_factory.mktemp("mixed")
    entries, tcs = [], {}
    for name, kind, seed in (("L1_tc_relu", "relu", 0), ("L1_tc_topk_skip", "topk_skip", 1)):
        tc = _fit(kind, cache[IN], cache[OUT], seed)
        save_sae(tc, folder / name, storage_dtype="float32", metadata={"hook_name": IN, "hook_name_out": OUT})
        tcs[name] = load_sae(folder / name).requires_grad_(False)  # the weights the evals read
        entries.append({"name": name, "path": name, "hook": IN, "hook_out": OUT, "d_sae": D_SAE,
                        "architecture": tc.cfg.architecture()})
    shipped = data_dir() / "saes" / DEFAULT_MODEL / SAE_NAME
    entries.append({"name": SAE_NAME, "path": str(shipped), "hook": "blocks.2.hook_mlp_out", "d_sae": 512,
                    "architecture": "topk"})
    (folder / "index.json").write_text(json.dumps({"model": DEFAULT_MODEL, "saes": entries}))
    res = run(Config(saes=str(folder), n_tokens=N_EVAL * CTX, ctx=CTX, batch_size=3))
    return model, blocks[:N_EVAL], folder, tcs, res


@needs_model
def test_transcoder_evals_equal_a_hand_written_float64_loop(setup):
    model, blocks, _, tcs, res = setup
    rows = {r["name"]: r for r in res.details["saes"]}
    with torch.no_grad():
        cache = model.run_with_cache(blocks, names_filter=[IN, OUT])[1]
        clean = model(blocks).double()
    x, y = cache[IN].double(), cache[OUT].double()
    lc = torch.log_softmax(clean, -1)[:, :-1]
    tgt = blocks[:, 1:, None]
    ce_clean = float(-lc.gather(-1, tgt).mean())
    y_mean = y.mean((0, 1))
    rec: dict[str, torch.Tensor] = {}

    def grab(a, hook):  # the input hook: record x for the output hook of the same forward
        rec["x"] = a
        return a

    for name, tc in tcs.items():
        r = rows[name]
        assert (r["kind"], r["hook"], r["hook_out"], r["d_in"], r["d_out"]) == ("transcoder", IN, OUT, 128, 128)
        pred = _predict(tc, x)
        fvu = float(((y - pred) ** 2).sum() / ((y - y_mean) ** 2).sum())
        assert r["fvu"] == pytest.approx(fvu, rel=1e-4) and r["explained_variance"] == pytest.approx(1 - fvu, rel=1e-3)
        assert r["l0"] == pytest.approx(float((_latents(tc, x) != 0).sum(-1).double().mean()), rel=1e-6)
        if hasattr(tc, "W_skip"):  # the skip term is part of the prediction the evals score
            fvu_no_skip = float(((y - _predict(tc, x, skip=False)) ** 2).sum() / ((y - y_mean) ** 2).sum())
            assert fvu_no_skip > fvu + 0.05
            assert r["l0"] == pytest.approx(K)
        ce = {}
        for kind, hooks in (("sae", [(IN, grab), (OUT, lambda a, hook, tc=tc: _predict(tc, rec["x"].double())
                                                  .to(a.dtype))]),
                            ("zero", [(OUT, lambda a, hook: torch.zeros_like(a))]),
                            ("mean", [(OUT, lambda a, hook: y_mean.to(a.dtype).expand_as(a).clone())])):
            with torch.no_grad():
                logits = model.run_with_hooks(blocks, fwd_hooks=hooks).double()
            lp = torch.log_softmax(logits, -1)[:, :-1]
            ce[kind] = float(-lp.gather(-1, tgt).mean())
            kl = float((lc.exp() * (lc - lp)).sum(-1).mean())
            assert r[f"ce_{kind}"] == pytest.approx(ce[kind], rel=1e-4)
            assert r[f"kl_{kind}"] == pytest.approx(kl, rel=1e-3, abs=1e-6)
        assert r["ce_clean"] == pytest.approx(ce_clean, rel=1e-5)
        for base in ("zero", "mean"):
            assert r[f"ce_loss_recovered_{base}"] == pytest.approx(
                (ce[base] - ce["sae"]) / (ce[base] - ce_clean), rel=1e-3)
        assert r["ce_loss_recovered_zero"] > 0.5  # a fitted transcoder keeps most of the loss


@needs_model
def test_reconstruct_of_a_transcoder_is_its_prediction_with_the_skip_term(setup):
    from analyses.dark_matter.studies import _check_entry
    from interp.errors import ConfigError
    from interp.saes import effective_decoder, reconstruct
    from interp.transcoders import predict

    model, blocks, _, tcs, _ = setup
    with torch.no_grad():
        x = model.run_with_cache(blocks, names_filter=IN)[1][IN].reshape(-1, 128)
    for tc in tcs.values():
        pred, l0 = reconstruct(tc, x, batch_size=100)
        torch.testing.assert_close(pred.double(), _predict(tc, x.double()), rtol=0, atol=1e-4)
        assert torch.equal(l0, (_latents(tc, x) != 0).sum(-1).float())
        assert torch.equal(pred, predict(tc, x)[0])
        with pytest.raises(ConfigError, match="is a transcoder"):  # dark matter needs SAEs of their own hook
            _check_entry({"name": "tc", "hook": IN, "d_sae": D_SAE}, tc)
        D, b = effective_decoder(tc)  # decode alone: W_dec and b_dec, no skip term
        torch.testing.assert_close(D, tc.W_dec, rtol=0, atol=1e-6)
        torch.testing.assert_close(b, tc.b_dec, rtol=0, atol=1e-6)


@needs_model
def test_mixed_folder_rows_findings_figures_and_a_single_transcoder_folder(setup, tmp_path):
    from interp.saes import load_sae, reconstruct, sae_entries

    model, blocks, folder, tcs, res = setup
    rows = {r["name"]: r for r in res.details["saes"]}
    sae_row = rows[SAE_NAME]
    assert (sae_row["kind"], sae_row["hook"], sae_row["hook_out"]) == ("sae", "blocks.2.hook_mlp_out",
                                                                         "blocks.2.hook_mlp_out")
    entry = next(e for e in sae_entries(folder) if e["name"] == SAE_NAME)
    with torch.no_grad():
        a = model.run_with_cache(blocks, names_filter=entry["hook"])[1][entry["hook"]].reshape(-1, 128)
    rec, _ = reconstruct(load_sae(entry["abs_path"]), a)
    fvu = float(((a - rec).double() ** 2).sum() / ((a.double() - a.double().mean(0)) ** 2).sum())
    assert sae_row["fvu"] == pytest.approx(fvu, rel=1e-4)
    assert set(res.provenance["hooks"]) == {IN, OUT, "blocks.2.hook_mlp_out"}
    assert "SAEs and transcoders" in res.findings[2].claim and "SAE or transcoder" in res.findings[1].claim
    assert all(f.consistent() for f in res.findings)
    back = SAEEvalsResult.load(res.save(tmp_path / "r"))
    assert back.details["saes"] == res.details["saes"]
    figs = back.figures()
    assert {"tradeoff", "loss_recovered", "density"} <= set(figs)
    assert any(f"{IN} → {OUT}" in str(t) for t in figs["tradeoff"].data[0].hovertext)
    alone = run(Config(saes=str(folder / "L1_tc_topk_skip"), n_tokens=N_EVAL * CTX, ctx=CTX, batch_size=2))
    (row,) = alone.details["saes"]
    want = rows["L1_tc_topk_skip"]
    assert (row["kind"], row["hook"], row["hook_out"]) == ("transcoder", IN, OUT)
    for k in ("fvu", "l0", "ce_sae", "ce_zero", "ce_mean", "kl_sae"):
        assert row[k] == pytest.approx(want[k], rel=1e-5), k
    assert "transcoders" in alone.findings[2].claim and "SAE" not in alone.findings[0].claim
