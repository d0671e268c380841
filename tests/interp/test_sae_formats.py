"""SAEs written by other libraries load as sae-lens SAEs whose encode/decode equal each library's own forward.

The references below are float64 transcriptions of each library's encode/decode (sparsify `SparseCoder`,
Gemma Scope's JumpReLU, dictionary_learning's AutoEncoder / AutoEncoderTopK / BatchTopKSAE / JumpReluAutoEncoder),
applied to random weights written in that library's on-disk layout. interp's loaded SAE runs in float32.
"""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from interp.errors import ConfigError, ModelNotFoundError
from interp.saes import load_sae, sae_entries

D_IN, D_SAE, K = 12, 40, 5
TOL = dict(rtol=1e-5, atol=1e-5)


def _rand(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _x(n=64):
    return _rand(n, D_IN, seed=99)


def _topk(pre, k):
    v, i = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, i, v)


def _check(path, encode, decode, hook=None):
    sae = load_sae(path, hook=hook)
    x = _x()
    f = sae.encode(x.float()).double()
    want = encode(x)
    assert 0 < int((want != 0).sum()) < want.numel()  # some latents on, some off: the rule is exercised
    torch.testing.assert_close(f, want, **TOL)
    torch.testing.assert_close(sae.decode(f.float()).double(), decode(want), **TOL)
    return sae


def _write_sparsify(folder, seed=0, **cfg):
    folder.mkdir(parents=True)
    w = {"encoder.weight": _rand(D_SAE, D_IN, seed=seed), "encoder.bias": _rand(D_SAE, seed=seed + 1) * 0.1,
         "W_dec": _rand(D_SAE, D_IN, seed=seed + 2), "b_dec": _rand(D_IN, seed=seed + 3) * 0.1}
    save_file({k: v.float() for k, v in w.items()}, str(folder / "sae.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"expansion_factor": 4, "normalize_decoder": True, "num_latents":
                                                 D_SAE, "k": K, "activation": "topk", "d_in": D_IN, **cfg}))
    return {k: v.float().double() for k, v in w.items()}


def test_sparsify_topk(tmp_path):
    w = _write_sparsify(tmp_path / "run" / "layers.3")

    def encode(x):  # SparseCoder.encode: ReLU(encoder(x - b_dec)), then the top k
        return _topk(torch.relu((x - w["b_dec"]) @ w["encoder.weight"].T + w["encoder.bias"]), K)

    sae = _check(tmp_path / "run" / "layers.3", encode, lambda f: f @ w["W_dec"] + w["b_dec"])
    assert sae.cfg.metadata.hook_name == "blocks.3.hook_resid_post"  # the block's output, as sparsify hooks it
    entries = sae_entries(tmp_path / "run")  # a sparsify run folder: one SAE per hookpoint
    assert [(e["name"], e["hook"], e["d_sae"]) for e in entries] == [("layers.3", "blocks.3.hook_resid_post", D_SAE)]
    from interp.browser.build import _sae_hook

    assert _sae_hook(tmp_path / "run" / "layers.3") == "blocks.3.hook_resid_post"  # what `interp browse` reads


def test_gemma_scope_npz(tmp_path):
    folder = tmp_path / "gemma-scope-2b-pt-res" / "layer_7" / "width_16k" / "average_l0_40"
    folder.mkdir(parents=True)
    w = {"W_enc": _rand(D_IN, D_SAE, seed=5), "b_enc": _rand(D_SAE, seed=6) * 0.1, "W_dec": _rand(D_SAE, D_IN, seed=7),
         "b_dec": _rand(D_IN, seed=8) * 0.1, "threshold": _rand(D_SAE, seed=9).abs()}
    np.savez(folder / "params.npz", **{k: v.float().numpy() for k, v in w.items()})
    w = {k: v.float().double() for k, v in w.items()}

    def encode(x):  # JumpReLU: ReLU(h) where h > θ; the input is not shifted by b_dec
        h = x @ w["W_enc"] + w["b_enc"]
        return torch.relu(h) * (h > w["threshold"])

    sae = _check(folder, encode, lambda f: f @ w["W_dec"] + w["b_dec"])
    assert sae.cfg.metadata.hook_name == "blocks.7.hook_resid_post"


def _write_dl(folder, kind, state, **trainer):
    folder.mkdir(parents=True)
    save_file({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, str(folder / "ae.safetensors"))
    (folder / "config.json").write_text(json.dumps({"trainer": {"dict_class": kind, "activation_dim": D_IN,
                                                                "dict_size": D_SAE, "layer": 4, **trainer}}))
    return {k: v.float().double() if v.is_floating_point() else v for k, v in state.items()}


def _linear_state(seed, bias="b_dec"):
    return {"encoder.weight": _rand(D_SAE, D_IN, seed=seed), "encoder.bias": _rand(D_SAE, seed=seed + 1) * 0.1,
            "decoder.weight": _rand(D_IN, D_SAE, seed=seed + 2), bias: _rand(D_IN, seed=seed + 3) * 0.1}


def test_dictionary_learning_autoencoder(tmp_path):
    w = _write_dl(tmp_path / "ae", "AutoEncoder", _linear_state(10, bias="bias"),
                  submodule_name="resid_post_layer_4")

    def encode(x):  # AutoEncoder.encode: ReLU(encoder(x - bias))
        return torch.relu((x - w["bias"]) @ w["encoder.weight"].T + w["encoder.bias"])

    sae = _check(tmp_path / "ae", encode, lambda f: f @ w["decoder.weight"].T + w["bias"])
    assert sae.cfg.metadata.hook_name == "blocks.4.hook_resid_post"


def test_dictionary_learning_topk(tmp_path):
    state = {**_linear_state(20), "k": torch.tensor(K, dtype=torch.int32), "threshold": torch.tensor(-1.0)}
    w = _write_dl(tmp_path / "topk", "AutoEncoderTopK", state)

    def encode(x):  # AutoEncoderTopK.encode (use_threshold=False, its default)
        return _topk(torch.relu((x - w["b_dec"]) @ w["encoder.weight"].T + w["encoder.bias"]), K)

    sae = _check(tmp_path / "topk", encode, lambda f: f @ w["decoder.weight"].T + w["b_dec"],
                 hook="blocks.4.hook_mlp_out")
    assert (sae.cfg.architecture(), sae.cfg.k, sae.cfg.metadata.hook_name) == ("topk", K, "blocks.4.hook_mlp_out")


@pytest.mark.parametrize("threshold", [0.3, -1.0])
def test_dictionary_learning_batch_topk_at_inference(tmp_path, threshold):
    state = {**_linear_state(30), "k": torch.tensor(K, dtype=torch.int32), "threshold": torch.tensor(threshold)}
    w = _write_dl(tmp_path / "btk", "BatchTopKSAE", state)

    def encode(x):  # BatchTopKSAE.encode (use_threshold=True, its inference default)
        post = torch.relu((x - w["b_dec"]) @ w["encoder.weight"].T + w["encoder.bias"])
        return post * (post > threshold)

    sae = _check(tmp_path / "btk", encode, lambda f: f @ w["decoder.weight"].T + w["b_dec"], hook="h")
    assert sae.cfg.architecture() == ("jumprelu" if threshold >= 0 else "standard")


def test_dictionary_learning_jumprelu_folds_its_feature_scale(tmp_path):
    state = {"W_enc": _rand(D_IN, D_SAE, seed=40), "b_enc": _rand(D_SAE, seed=41) * 0.1,
             "W_dec": _rand(D_SAE, D_IN, seed=42) * 3, "b_dec": _rand(D_IN, seed=43) * 0.1,
             "threshold": _rand(D_SAE, seed=44).abs()}
    w = _write_dl(tmp_path / "jr", "JumpReluAutoEncoder", state)
    n = w["W_dec"].norm(dim=1)

    def encode(x):  # JumpReluAutoEncoder.encode: ReLU(h·[h > θ]) scaled by the decoder row norms
        h = x @ w["W_enc"] + w["b_enc"]
        return torch.relu(h * (h > w["threshold"])) * n

    sae = _check(tmp_path / "jr", encode, lambda f: (f / n) @ w["W_dec"] + w["b_dec"], hook="h")
    assert sae.cfg.architecture() == "jumprelu"  # the scale is folded: decoder rows of unit norm, no rescaling left
    torch.testing.assert_close(sae.W_dec.double().norm(dim=1), torch.ones(D_SAE, dtype=torch.float64), **TOL)


def test_refusals_name_the_problem(tmp_path):
    pickle_only = tmp_path / "dl"
    pickle_only.mkdir()
    (pickle_only / "config.json").write_text(json.dumps({"trainer": {"dict_class": "AutoEncoder"}}))
    (pickle_only / "ae.pt").write_bytes(b"not even a pickle: interp must not try to open it")
    with pytest.raises(ConfigError, match="pickle.*never opens"):
        load_sae(pickle_only, hook="h")
    _write_sparsify(tmp_path / "skip" / "layers.1", skip_connection=True)  # transcoders load: test_transcoders
    with pytest.raises(ConfigError, match="skip_connection"):
        load_sae(tmp_path / "skip" / "layers.1")
    _write_sparsify(tmp_path / "odd" / "embed_in")
    with pytest.raises(ConfigError, match="hook="):
        load_sae(tmp_path / "odd" / "embed_in")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="not an SAE folder"):
        load_sae(tmp_path / "empty")
