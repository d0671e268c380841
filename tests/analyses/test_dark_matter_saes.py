"""Self-consistency on tiny trained TopK SAEs (spec check 5) and the interp.saes load/save/train helpers."""

from __future__ import annotations

import pytest
import torch

from analyses.dark_matter.method import decompose_sae_error, per_token_width_predictability
from analyses.dark_matter.synthetic import sparse_feature_data
from interp.errors import ConfigError, HubUnavailableError, ModelNotFoundError
from interp.sae_training import train_sae
from interp.saes import effective_decoder, load_sae, reconstruct, save_sae


@pytest.fixture(scope="module")
def sweep() -> dict:
    torch.manual_seed(0)
    codes, D = sparse_feature_data(n=40_000, d=32, n_features=384, mean_active=6.0, seed=1)
    g = torch.Generator().manual_seed(1)
    x = codes @ D + 0.15 * torch.randn(codes.shape[0], 32, generator=g)  # isotropic dense component
    train, test = x[:30_000], x[30_000:]
    saes = {w: train_sae(train, d_sae=w, architecture="topk", k=6, training_tokens=120_000, batch_size=512,
                         lr=3e-3, seed=0) for w in (128, 256, 512)}
    return {"test": test, "saes": saes}


@pytest.mark.slow
def test_trained_sweep_orderings(sweep) -> None:
    test = sweep["test"]
    fvus, fvus_lin, norms = [], [], []
    for _, sae in sorted(sweep["saes"].items()):
        rec, l0 = reconstruct(sae, test)
        assert torch.all(l0 <= 6)
        dec = decompose_sae_error(test, rec)
        fvus.append(dec.fvu_sae)
        fvus_lin.append(dec.fvu_sae_plus_linear)
        norms.append(dec.sae_error.norm(dim=1))
    assert fvus[0] > fvus[1] > fvus[2]  # FVU falls with width
    assert all(b <= a + 1e-9 for a, b in zip(fvus, fvus_lin))  # linear part never hurts on held-out rows
    r2m, _ = per_token_width_predictability(torch.stack(norms, 1))
    assert torch.all(r2m[~torch.eye(3, dtype=torch.bool)] > 0)


@pytest.fixture(scope="module")
def tiny() -> dict:
    codes, D = sparse_feature_data(n=12_000, d=16, n_features=48, mean_active=3.0, seed=2)
    x = codes @ D
    return {"x": x, "topk": train_sae(x, d_sae=64, architecture="topk", k=3, training_tokens=16_000,
                                      batch_size=256, lr=5e-3),
            "jumprelu": train_sae(x, d_sae=64, architecture="jumprelu", target_l0=3, training_tokens=25_000,
                                  batch_size=256, lr=5e-3, l0_coefficient=0.5)}


@pytest.mark.parametrize("arch", ["topk", "jumprelu"])
def test_train_sae_learns(tiny, arch: str) -> None:
    x = tiny["x"]
    rec, l0 = reconstruct(tiny[arch], x)
    fvu = float(((x - rec) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    assert fvu < 0.5, fvu  # far better than the mean predictor (FVU 1) after a few hundred steps
    assert float(l0.mean()) < 12  # sparse: well below d = 16


def test_save_load_roundtrip(tiny, tmp_path) -> None:
    sae = tiny["topk"]
    out = save_sae(sae, tmp_path / "s", storage_dtype="float16", metadata={"note": "test"})
    back = load_sae(out)
    for name, p in sae.state_dict().items():  # weights come back as the fp16-rounded originals, in float32
        q = back.state_dict()[name]
        assert q.dtype == torch.float32 and torch.equal(q, p.half().float())
    full = load_sae(save_sae(sae, tmp_path / "f", storage_dtype="float32"))
    x = tiny["x"][:100]
    assert torch.equal(reconstruct(full, x)[0], reconstruct(sae, x)[0])


def test_hook_z_sae_flattened_rows_equal_sae_lens_own_reshaping(tiny, tmp_path) -> None:
    """A hook_z SAE is saved for sae-lens' [.., heads, d_head] splicing, while interp feeds it flattened rows."""
    import json


    out = save_sae(tiny["topk"], tmp_path / "z", storage_dtype="float32",
                   metadata={"hook_name": "blocks.0.attn.hook_z"})
    assert json.loads((out / "cfg.json").read_text())["reshape_activations"] == "hook_z"
    sae = load_sae(out)  # reshaping on, as sae-lens splices it into a model
    heads = tiny["x"][:64].reshape(64, 4, 4)  # d_in 16 = 4 heads x 4
    native = sae(heads)
    rec, _ = reconstruct(sae, tiny["x"][:64])  # interp's flattened rows
    assert torch.allclose(rec, native.reshape(64, 16), atol=1e-6)
    D, b = effective_decoder(sae)
    assert sae.hook_z_reshaping_mode and torch.equal(sae(heads), native)  # mode restored after interp's calls
    with torch.no_grad():
        assert torch.allclose(sae.encode(heads).reshape(64, -1) @ D + b, rec, atol=1e-5)


def test_train_sae_flattens_per_head_rows(tiny) -> None:
    """Rows [n, heads, d_head] (a cache of attn.hook_z) train an SAE of d_in = heads·d_head, seeing the same data."""
    x = tiny["x"][:4096]
    flat = train_sae(x, d_sae=32, architecture="topk", k=3, training_tokens=2048, batch_size=256, seed=0)
    heads = train_sae(x.reshape(-1, 4, 4), d_sae=32, architecture="topk", k=3, training_tokens=2048,
                      batch_size=256, seed=0)
    assert heads.cfg.d_in == 16
    for name, p in flat.state_dict().items():
        assert torch.equal(heads.state_dict()[name], p), name


def test_load_errors(tmp_path, monkeypatch) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError):
        load_sae(tmp_path / "empty")
    with pytest.raises(ModelNotFoundError):
        load_sae("no-such-release-anywhere")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError):
        load_sae("gpt2-small-res-jb")
    with pytest.raises(HubUnavailableError):
        load_sae("gpt2-small-res-jb", sae_id="blocks.0.hook_resid_pre")
    with pytest.raises(ConfigError):
        train_sae(torch.zeros(10, 4), d_sae=8, batch_size=64)
    with pytest.raises(ConfigError):
        train_sae(torch.zeros(100, 4), d_sae=8, batch_size=64, architecture="gated")


@pytest.mark.parametrize("rescale", [True, False])
def test_effective_decoder_matches_decode(rescale: bool) -> None:
    from sae_lens import TopKSAE, TopKSAEConfig

    from interp.saes import effective_decoder

    torch.manual_seed(0)
    sae = TopKSAE(TopKSAEConfig(d_in=8, d_sae=40, k=3, rescale_acts_by_decoder_norm=rescale))
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn_like(p))
    D, b = effective_decoder(sae, chunk=7)
    f = torch.relu(torch.randn(5, 40))
    with torch.no_grad():
        assert torch.allclose(sae.decode(f), f @ D + b, atol=1e-4)
    if not rescale:
        assert torch.allclose(D, sae.W_dec.detach()) and torch.allclose(b, sae.b_dec.detach())


def test_effective_decoder_of_a_bf16_sae_is_its_dictionary() -> None:
    """A bf16 SAE: probing decode in bf16 rounded each row together with b_dec (row errors ~3 %, and rows of 0 when
    b_dec is large). The dictionary is the bf16 weights themselves, exactly representable in float32."""
    from sae_lens import StandardSAE, StandardSAEConfig

    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=16, d_sae=64))
    with torch.no_grad():
        sae.W_dec.copy_(torch.randn_like(sae.W_dec) * 0.05)
        sae.b_dec.copy_(torch.full_like(sae.b_dec, 50.0))  # inputs with a mean offset of 50
    sae = sae.to(torch.bfloat16)
    D, b = effective_decoder(sae)
    W = sae.W_dec.detach().double()
    row_err = ((D.double() - W).norm(dim=1) / W.norm(dim=1)).max()
    assert D.dtype == torch.float32 and row_err < 1e-4, row_err  # was 1.0: rows of zeros
    assert torch.equal(b, sae.b_dec.detach().float())
    assert next(sae.parameters()).dtype == torch.bfloat16  # the SAE itself is not converted
    D_meta, _ = effective_decoder(sae.float().to("meta"))  # probes are made on the SAE's device
    assert D_meta.device.type == "meta" and D_meta.shape == (64, 16)


def test_saved_sae_loads_as_float32_in_sae_lens_too(tiny, tmp_path) -> None:
    import json

    from sae_lens import SAE

    out = save_sae(tiny["topk"].to(torch.bfloat16), tmp_path / "b", storage_dtype="bfloat16")
    assert json.loads((out / "cfg.json").read_text()).get("dtype", "float32") == "float32"
    assert next(SAE.load_from_disk(str(out)).parameters()).dtype == torch.float32
    tiny["topk"].float()


def test_damaged_sae_index_is_a_typed_error(tmp_path):
    from interp.errors import ConfigError
    from interp.saes import load_index

    (tmp_path / "index.json").write_bytes(b'{"saes": [{"name": "x"}')
    with pytest.raises(ConfigError, match="damaged"):
        load_index(tmp_path)
    (tmp_path / "index.json").write_text('{"saes": [{"name": "x"}]}')  # no "path"
    with pytest.raises(ConfigError, match="damaged"):
        load_index(tmp_path)


def test_a_transcoder_at_a_component_hook_is_refused_before_any_capture(tmp_path, monkeypatch):
    """A transcoder whose input hook is a component hook (blocks.1.hook_resid_post = layer 2's prev_resid) would
    reach the §7 regressions as if it reconstructed that hook: refused in one line, before activations are taken."""
    import json
    import shutil

    import analyses.dark_matter.studies as studies
    from analyses.dark_matter import Config, run
    from interp.data_paths import data_dir

    shipped = data_dir() / "saes" / "toy-pythia-4l"
    folder = tmp_path / "saes"
    shutil.copytree(shipped, folder)
    index = json.loads((folder / "index.json").read_text())
    first = index["saes"][0]
    index["saes"].append({**first, "name": "tc", "hook": "blocks.1.hook_resid_post", "kind": "transcoder",
                          "hook_out": "blocks.2.hook_mlp_out"})
    (folder / "index.json").write_text(json.dumps(index))
    monkeypatch.setattr(studies, "collect", lambda *a, **k: pytest.fail("activations were collected"))
    with pytest.raises(ConfigError, match="tc is a transcoder"):
        run(Config(saes=str(folder), layer=2))
