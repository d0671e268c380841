"""The analyses on a user's model that transformer-lens does not convert (a tiny random Qwen3, run natively):
massive activations across a training run's checkpoint folders, dark matter with SAEs trained by
`interp saes train` from a cache; each writes its result and a report page. LIB converts it to transformer-lens."""

from __future__ import annotations

import json

import pytest

from apps.cli import main


@pytest.fixture(scope="module")
def qwen3_run(tmp_path_factory):
    """A 'training run': six checkpoint folders step0 .. step5000 (random weights of different seeds)."""
    from tiny_hf import save_tiny_native

    from helpers import tiny_tokenizer

    run = tmp_path_factory.mktemp("run") / "my-qwen3-run"
    tok = tiny_tokenizer()
    for i, step in enumerate((0, 10, 100, 1000, 2000, 5000)):
        save_tiny_native(run / f"step{step}", "qwen3", tokenizer=tok, seed=i)
    return run


def test_checkpoint_folders_are_a_model(qwen3_run):
    from interp.models import checkpoints, load, load_tokenizer, resolved_step

    assert checkpoints(str(qwen3_run)) == [0, 10, 100, 1000, 2000, 5000]
    model = load(str(qwen3_run), step=100)
    assert type(model).__name__ == "NativeModel" and resolved_step(str(qwen3_run), None, model) == 100
    assert load_tokenizer(str(qwen3_run)) is not None
    with pytest.raises(Exception, match="no checkpoint at step 7"):
        load(str(qwen3_run), step=7)


def test_massive_on_a_native_training_run(qwen3_run, tmp_path, capsys):
    out = tmp_path / "massive"
    assert main(["analyze", "massive", "--model", str(qwen3_run), "--n-inputs", "2", "--ctx", "16",
                 "--no-compare-alternatives", "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "result.json").read_text())
    assert doc["provenance"]["step"] == [0, 10, 100, 1000, 2000, 5000] and doc["summary"]["n_layers"] == 2
    assert doc["details"]["fit_status"] == "fitted" and len(doc["findings"]) == 4
    iv = doc["details"]["interventions"]
    assert [r["mode"] for r in iv] == ["zero", "mean"] and all(r["loss_clean"] > 0 for r in iv)
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0


def test_dark_matter_with_saes_trained_from_a_cache(qwen3_run, tmp_path):
    folder = str(qwen3_run / "step5000")
    cache, saes = tmp_path / "cache", tmp_path / "saes"
    assert main(["extract", "--model", folder, "--hooks", "blocks.1.hook_resid_post", "--tokens", "8192", "--ctx",
                 "32", "--out", str(cache), "--quiet"]) == 0
    assert main(["saes", "train", "--cache", str(cache), "--hook", "blocks.1.hook_resid_post", "--widths", "2", "4",
                 "8", "--k", "4", "--training-tokens", "8192", "--batch-size", "256", "--out", str(saes)]) == 0
    out = tmp_path / "dm"
    assert main(["analyze", "dark-matter", "--model", folder, "--saes", str(saes), "--layer", "1", "--n-tokens",
                 "2048", "--ctx", "32", "--positions", "range:2:31", "--pursuit-tokens", "64", "--synthetic-tokens",
                 "512", "--downstream-blocks", "4", "--trace-tokens", "20", "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "result.json").read_text())
    rows = doc["details"]["saes"]
    assert [r["d_sae"] for r in rows] == [64, 128, 256]
    assert all(r["fvu_sae_plus_linear"] <= r["fvu_sae"] + 1e-3 for r in rows)
    dl = doc["details"]["downstream_loss"]
    assert dl["clean"] > 0 and dl["n_scored"] > 0
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0


def test_lib_on_a_native_checkpoint_converts_it(qwen3_run, tmp_path):
    """LIB's LM mode converts a natively run Qwen3 (one checkpoint of the run) to transformer-lens and says so."""
    out = tmp_path / "lib"
    assert main(["analyze", "lib", "--model", str(qwen3_run), "--step", "10", "--lm-ctx", "4", "--lm-blocks", "4",
                 "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "result.json").read_text())
    assert doc["provenance"]["converted_from"] == "Qwen3ForCausalLM" and doc["provenance"]["step"] == 10
    assert doc["summary"]["converted_from"] == "Qwen3ForCausalLM" and len(doc["findings"]) == 3


@pytest.mark.parametrize("name", ["lib"])
def test_methods_that_need_transformer_lens_refuse_in_one_line(tmp_path, capsys, name):
    """LIB's LM mode reads TL blocks: a native model that does not convert to transformer-lens (Gemma 2) is refused
    with why. (Qwen3 converts: above, and tests/analyses/test_lib_modern.py.)"""
    from tiny_hf import save_tiny_native

    folder = save_tiny_native(tmp_path / "gemma2", "gemma2")
    assert main(["analyze", name, "--model", str(folder), "--out", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "transformer-lens" in err and "Gemma2ForCausalLM" in err
    assert not (tmp_path / name / "result.json").exists()


def test_hashcodes_lm_study_on_a_native_model(qwen3_run):
    """The hash-code LM study reads blocks.*.mlp.hook_post, a canonical alias of the native model."""
    from analyses.hashcodes import Config, run

    res = run(Config(widths=[5], seeds=[0], epoch_checkpoints=[0], sample_sizes=[], model=str(qwen3_run / "step0"),
                     lm_tokens=256, lm_ctx=32, max_epochs=2))
    lm = res.details["lm"]
    assert lm["status"] == "ok", lm
    assert 0 <= lm["tokens"]["rr_all"] <= 1 and res.summary["lm_status"] == "ok"


def test_sae_evals_on_a_native_model_equal_a_hand_written_hf_splice(qwen3_run, tmp_path):
    """`interp saes eval` on a natively run Qwen3 with an SAE from `interp saes train`: FVU from the SAE on rows
    captured here, CE and KL of the spliced and zero-ablated forward from a forward hook on the Hugging Face decoder
    layer written here (float64 log-softmax)."""
    import torch
    from transformers import AutoModelForCausalLM

    from interp.models import load
    from interp.saes import load_sae, reconstruct, sae_entries
    from interp.sources import token_blocks

    folder, hook = str(qwen3_run / "step5000"), "blocks.1.hook_resid_post"
    cache, saes, out = tmp_path / "cache", tmp_path / "saes", tmp_path / "evals"
    assert main(["extract", "--model", folder, "--hooks", hook, "--tokens", "4096", "--ctx", "32", "--out",
                 str(cache), "--quiet"]) == 0
    assert main(["saes", "train", "--cache", str(cache), "--hook", hook, "--widths", "4", "--k", "4",
                 "--training-tokens", "4096", "--batch-size", "256", "--out", str(saes)]) == 0
    assert main(["saes", "eval", "--model", folder, "--saes", str(saes), "--n-tokens", "256", "--ctx", "32",
                 "--batch-size", "3", "--out", str(out), "--quiet"]) == 0
    (row,) = json.loads((out / "result.json").read_text())["details"]["saes"]
    (entry,) = sae_entries(str(saes))
    sae = load_sae(entry["abs_path"])
    blocks = token_blocks("embedded", load(folder).tokenizer, ctx=32, n_tokens=256)
    hf = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    layer, seen = hf.model.layers[1], {}

    def splice(edit):
        def hook_fn(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            seen["x"] = h.detach().reshape(-1, h.shape[-1])
            h = edit(h)
            return (h, *output[1:]) if isinstance(output, tuple) else h
        return hook_fn

    def log_probs(edit):
        handle = layer.register_forward_hook(splice(edit))
        try:
            with torch.no_grad():
                return torch.log_softmax(hf(blocks).logits.double(), -1)[:, :-1]
        finally:
            handle.remove()

    tgt = blocks[:, 1:, None]
    clean = log_probs(lambda h: h)
    x = seen["x"]
    rec, l0 = reconstruct(sae, x)
    fvu = float(((x - rec).double() ** 2).sum() / ((x.double() - x.double().mean(0)) ** 2).sum())
    assert row["fvu"] == pytest.approx(fvu, rel=1e-4) and row["l0"] == pytest.approx(float(l0.mean()))
    assert row["ce_clean"] == pytest.approx(float(-clean.gather(-1, tgt).mean()), rel=1e-5)
    for kind, edit in (("sae", lambda h: reconstruct(sae, h.reshape(-1, h.shape[-1]))[0].reshape(h.shape)),
                       ("zero", torch.zeros_like)):
        lp = log_probs(edit)
        assert row[f"ce_{kind}"] == pytest.approx(float(-lp.gather(-1, tgt).mean()), rel=1e-4)
        assert row[f"kl_{kind}"] == pytest.approx(float((clean.exp() * (clean - lp)).sum(-1).mean()), rel=1e-3,
                                                  abs=1e-6)
