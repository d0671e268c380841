"""`interp saes import` and `saes eval` on an SAE folder of another library (sparsify): a shipped sae-lens SAE,
rewritten in sparsify's layout, reconstructs and scores exactly as the original does."""

import json

import pytest
import torch
from safetensors.torch import save_file

from interp.saes import load_sae


def test_import_cli_then_evals_match_the_original(tmp_path, capsys):
    """A shipped sae-lens TopK SAE rewritten in sparsify's layout, imported by `interp saes import`, reconstructs
    the same activations with the same L0 as the original. The shipped SAE rescales its pre-activations by the
    decoder row norms n (rescale_acts_by_decoder_norm), so the export folds n in: encoder·n, bias·n, W_dec/n."""
    from apps.cli import main
    from interp.data_paths import data_dir
    from interp.saes import reconstruct

    original = load_sae(data_dir() / "saes" / "toy-pythia-4l" / "L2_resid_topk_x4")
    assert original.cfg.metadata.hook_name == "blocks.2.hook_resid_post"
    src = tmp_path / "sparsify_run" / "layers.2"
    src.mkdir(parents=True)
    n = original.W_dec.norm(dim=1) if original.cfg.rescale_acts_by_decoder_norm else torch.ones(original.cfg.d_sae)
    save_file({"encoder.weight": (original.W_enc * n).T.contiguous(), "encoder.bias": original.b_enc * n,
               "W_dec": original.W_dec / n[:, None], "b_dec": original.b_dec.contiguous()},
              str(src / "sae.safetensors"))
    (src / "cfg.json").write_text(json.dumps({"k": original.cfg.k, "num_latents": original.cfg.d_sae,
                                              "d_in": original.cfg.d_in, "activation": "topk"}))
    assert main(["saes", "import", str(tmp_path / "sparsify_run"), "--out", str(tmp_path / "imported"),
                 "--model", "toy-pythia-4l"]) == 0
    index = json.loads((tmp_path / "imported" / "index.json").read_text())
    (entry,) = index["saes"]
    assert (entry["hook"], entry["architecture"], entry["source"]["format"]) == \
        ("blocks.2.hook_resid_post", "topk", "sparsify")
    imported = load_sae(tmp_path / "imported" / "layers.2")
    x = torch.randn(256, original.cfg.d_in, generator=torch.Generator().manual_seed(3))
    (r0, l0), (r1, l1) = reconstruct(original, x), reconstruct(imported, x)
    torch.testing.assert_close(r1, r0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(l1, l0, rtol=0, atol=0)
    from analyses.sae_evals import Config as EvalConfig
    from analyses.sae_evals import run as run_evals

    # `interp saes eval --saes <sparsify run folder>` without importing: the same numbers as the shipped original
    common = dict(n_tokens=2 * 64, ctx=64, batch_size=2)
    theirs = run_evals(EvalConfig(saes=str(tmp_path / "sparsify_run"), **common)).details["saes"][0]
    ours = run_evals(EvalConfig(names=["L2_resid_topk_x4"], **common)).details["saes"][0]
    for key in ("fvu", "l0", "ce_loss_recovered_zero", "kl_sae"):
        assert theirs[key] == pytest.approx(ours[key], rel=1e-4, abs=1e-6), key


def test_import_refuses_to_replace_an_sae_without_overwrite(tmp_path):
    from apps.cli import main

    src = tmp_path / "run" / "layers.1"
    src.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    save_file({"encoder.weight": torch.randn(16, 4, generator=g), "encoder.bias": torch.zeros(16),
               "W_dec": torch.randn(16, 4, generator=g), "b_dec": torch.zeros(4)}, str(src / "sae.safetensors"))
    (src / "cfg.json").write_text(json.dumps({"k": 2, "num_latents": 16, "d_in": 4}))
    out = tmp_path / "saes"
    assert main(["saes", "import", str(tmp_path / "run"), "--out", str(out)]) == 0
    before = (out / "layers.1" / "sae_weights.safetensors").read_bytes()
    assert main(["saes", "import", str(tmp_path / "run"), "--out", str(out)]) == 2  # one line, nothing touched
    assert (out / "layers.1" / "sae_weights.safetensors").read_bytes() == before
    assert main(["saes", "import", str(tmp_path / "run"), "--out", str(out), "--overwrite"]) == 0


def test_import_of_a_sparsify_transcoder_keeps_both_hooks(tmp_path):
    """A sparsify transcoder at `layers.1.mlp` imports as interp's TopKTranscoder reading the MLP input and
    predicting the MLP output, and computes the same function as the folder it came from."""
    from apps.cli import main
    from interp.transcoders import TopKTranscoder

    src = tmp_path / "run" / "layers.1.mlp"
    src.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    save_file({"encoder.weight": torch.randn(16, 4, generator=g), "encoder.bias": torch.zeros(16),
               "W_dec": torch.randn(16, 4, generator=g), "b_dec": torch.zeros(4)}, str(src / "sae.safetensors"))
    (src / "cfg.json").write_text(json.dumps({"k": 3, "num_latents": 16, "d_in": 4, "activation": "topk",
                                              "transcode": True}))
    assert main(["saes", "import", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--storage-dtype",
                 "float32"]) == 0
    (entry,) = json.loads((tmp_path / "out" / "index.json").read_text())["saes"]
    assert (entry["hook"], entry["hook_out"], entry["architecture"]) == \
        ("blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out", "topk_transcoder")
    imported, direct = load_sae(tmp_path / "out" / "layers.1.mlp"), load_sae(src)
    assert type(imported) is TopKTranscoder and imported.cfg.metadata.hook_name_out == "blocks.1.hook_mlp_out"
    x = torch.randn(32, 4, generator=g)
    torch.testing.assert_close(imported(x), direct(x), rtol=0, atol=0)


def test_extract_and_browse_a_sparsify_folder_as_it_is(tmp_path):
    """No import: `--sae <sparsify folder>` extracts top-k latents equal to the SAE's own encoder of the hook's rows,
    and the browser's logit effects are that folder's W_dec · W_U (float64)."""
    import numpy as np

    from interp.browser import build_browser
    from interp.cache import open_cache
    from interp.cache.sparse_formats import read_sparse
    from interp.encode import sparse_hook_formats
    from interp.extract import ExtractConfig, extract
    from interp.models import load

    model = load("toy-pythia-4l")
    d, d_sae, k = int(model.cfg.d_model), 64, 4
    src = tmp_path / "run" / "layers.1"
    src.mkdir(parents=True)
    g = torch.Generator().manual_seed(5)
    w = {"encoder.weight": torch.randn(d_sae, d, generator=g) / d ** 0.5, "encoder.bias": torch.zeros(d_sae),
         "W_dec": torch.randn(d_sae, d, generator=g), "b_dec": torch.randn(d, generator=g) * 0.1}
    save_file(w, str(src / "sae.safetensors"))
    (src / "cfg.json").write_text(json.dumps({"k": k, "num_latents": d_sae, "d_in": d}))
    hooks, formats = sparse_hook_formats(model, ["blocks.*.hook_resid_post"], "topk", sae=str(src),
                                         value_dtype="float32")
    assert hooks == ["blocks.1.hook_resid_post"]  # sparsify's layers.1 = the block's output
    common = dict(model="toy-pythia-4l", data="embedded", tokens=512, ctx=64, batch_size=4)
    extract(ExtractConfig(out=str(tmp_path / "lat"), hooks=hooks, formats=formats, **common), model=model,
            progress=False)
    extract(ExtractConfig(out=str(tmp_path / "dense"), hooks=hooks, **common), model=model, progress=False)
    x = torch.as_tensor(np.asarray(open_cache(tmp_path / "dense").read(hooks[0], 0, None), dtype=np.float32))
    pre = torch.relu((x.double() - w["b_dec"].double()) @ w["encoder.weight"].double().T)  # sparsify's encoder
    want = torch.zeros_like(pre).scatter(1, pre.topk(k).indices, pre.topk(k).values)
    got = read_sparse(open_cache(tmp_path / "lat"), hooks[0], 0, None).to_dense().double()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    _, _, ex = build_browser(src, tmp_path / "lat", tmp_path / "site", model=model, tokenizer=model.tokenizer,
                             n_logits=5, device="cpu", return_data=True)
    eff = w["W_dec"].double().numpy() @ model.W_U.detach().double().numpy()
    for j in range(d_sae):
        np.testing.assert_allclose(ex.logits["pos"][j], np.sort(eff[j])[::-1][:5], rtol=1e-5, atol=1e-6)
