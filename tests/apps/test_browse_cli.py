"""`interp browse` on a synthetic cache: writes the site, refuses foreign folders (exit 2, one line), and the report
index links a browser folder placed beside its pages."""

from __future__ import annotations

import browser_support as B
import report_support as S
from apps.cli import main


def test_cli_browse_writes_site_and_report_links_it(tmp_path, capsys):
    B.make_sae(tmp_path / "sae")
    cache = B.make_cache(tmp_path / "cache", B.make_data(), dense=False)
    report = tmp_path / "report"
    site = report / "latents <b>"  # a folder name that is markup: escaped in the index
    args = ["browse", "--sae", str(tmp_path / "sae"), "--cache", str(cache), "--out", str(site), "--no-model",
            "--k-top", "3", "--bins", "8", "--quantiles", "2", "--per-quantile", "1", "--device", "cpu"]
    assert main(args) == 0
    assert f"wrote {site / 'index.html'}" in capsys.readouterr().out
    _, meta = B.read_chunk(site / "data" / "meta.js")
    assert meta["n_latents"] == B.D_SAE and "skipped" in meta["logit_note"]
    assert main(args) == 0  # a rebuild into its own folder is allowed

    from apps.report import build_report

    S.make_results(tmp_path / "results", hostile=False)
    index = build_report(tmp_path / "results", report, registry=S.REGISTRY).read_text()
    assert "<a href='latents &lt;b&gt;/index.html'>latents &lt;b&gt;</a>" in index


def test_cli_browse_refuses_a_foreign_folder(tmp_path, capsys):
    B.make_sae(tmp_path / "sae")
    cache = B.make_cache(tmp_path / "cache", B.make_data(), dense=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    rc = main(["browse", "--sae", str(tmp_path / "sae"), "--cache", str(cache), "--out", str(other), "--no-model"])
    err = capsys.readouterr().err
    assert rc == 2 and "holds no latent browser" in err and (other / "keep.txt").read_text() == "mine"
    rc = main(["browse", "--sae", str(tmp_path / "sae"), "--cache", str(tmp_path / "nope"), "--out", str(other)])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


def test_demo_browser_of_a_shipped_sae(tmp_path):
    """The demo hook on 4,096 embedded tokens: latents sparse, the hook dense beside them, logit effects from the
    model, the error-norm correlation, and the report index linking the site."""
    from apps.browse_cmd import build_demo_browser

    site = build_demo_browser(tmp_path, quick=True, device="cpu")
    assert site == tmp_path / "report" / "latents"
    _, meta = B.read_chunk(site / "data" / "meta.js")
    assert meta["n_latents"] == 512 and meta["n_rows"] == 4096 and meta["has_err"] and meta["logit_note"] == ""
    _, recs = B.read_chunk(site / "data" / "latents" / "c00000.js")
    fired = [r for r in recs.values() if r["count"]]
    assert fired and all(len(r["logits"]["pos"]) == 10 and r["err_corr"] is not None for r in fired)


def test_wrong_sae_is_refused_and_browse_returns_a_site(tmp_path, capsys):
    """An SAE of another width is refused before any work (one line, exit 2); interp.browse returns the site,
    which Jupyter shows as an iframe of its index.html."""
    import json

    import interp

    B.make_sae(tmp_path / "sae")
    cache = B.make_cache(tmp_path / "cache", B.make_data(), dense=False)
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    other = tmp_path / "other_sae"
    B.make_sae(other)
    from safetensors.torch import load_file, save_file

    w = load_file(str(other / "sae_weights.safetensors"))
    save_file({k: (v[:10].contiguous() if k == "W_dec" else v) for k, v in w.items()},
              str(other / "sae_weights.safetensors"))
    (other / "cfg.json").write_text(json.dumps({**cfg, "d_sae": 10}))
    rc = main(["browse", "--sae", str(other), "--cache", str(cache), "--out", str(tmp_path / "s"), "--no-model"])
    assert rc == 2 and "the SAE has 10 latents" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    site = interp.browse(tmp_path / "sae", cache, tmp_path / "site", model=False, tokenizer=B.vocab(), k_top=2,
                         n_bins=4, n_quantiles=2, per_quantile=1, device="cpu")
    assert site.path == tmp_path / "site" and "<iframe" in site._repr_html_()
    assert "index.html" in site._repr_html_()


def test_tokenizer_and_model_options(tmp_path, capsys):
    """A cache whose manifest names no loadable model: --tokenizer gives the token strings (each context token is
    the tokenizer's own decode of the cached id), --model gives the logit effects (W_dec · W_U computed here);
    --model with --no-model and a missing tokenizer folder are refused in one line before any work."""
    import numpy as np
    import torch

    from helpers import tiny_tokenizer
    from interp.browser.contexts import visible
    from interp.models import load

    B.make_sae(tmp_path / "sae")
    data = B.make_data()
    cache = B.make_cache(tmp_path / "cache", data, dense=False)
    tok_dir = tmp_path / "tok"
    tiny_tokenizer().save_pretrained(tok_dir)
    base = ["browse", "--sae", str(tmp_path / "sae"), "--cache", str(cache), "--k-top", "3", "--bins", "8",
            "--quantiles", "2", "--per-quantile", "1", "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "a"), "--no-model", "--tokenizer", str(tok_dir)]) == 0
    tok = tiny_tokenizer()
    _, recs = B.read_chunk(tmp_path / "a" / "data" / "latents" / "c00000.js")
    rec = recs[str(B.PLANTED)]
    for x in rec["top"]:
        assert x["t"][x["c"]] == visible(tok.decode([int(data["tokens"][x["row"], 0])]))

    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "model"  # a user's model of the SAE's width (d_model 16)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=300, n_embd=B.D_IN, n_layer=1, n_head=2, n_positions=64)).save_pretrained(
        folder)
    tok.save_pretrained(folder)
    assert main([*base, "--out", str(tmp_path / "b"), "--model", str(folder)]) == 0
    _, recs = B.read_chunk(tmp_path / "b" / "data" / "latents" / "c00000.js")
    W_U = load(str(folder)).W_U.detach().double().numpy()
    W_dec = B.make_sae(tmp_path / "sae2")["W_dec"].astype(np.float64)
    effect = W_dec[B.PLANTED] @ W_U
    best = recs[str(B.PLANTED)]["logits"]["pos"][0]
    assert best[0] == visible(tok.decode([int(effect.argmax())])) and abs(best[1] - effect.max()) < 1e-3 * abs(
        effect.max())

    assert main([*base, "--out", str(tmp_path / "c"), "--no-model", "--model", str(folder)]) == 2
    assert "contradict" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "d"), "--tokenizer", str(tmp_path / "nope")]) == 2
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
