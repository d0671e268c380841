"""Sparse hooks in the activation cache: `extract` with an SAE stores its latents top-k; they decode to the
SAE's reconstruction (same FVU to 3 decimals) at ≥ d_sae·2/(k·6) storage ratio; threshold CSR round-trips."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import dataclasses  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from interp.cache import open_cache  # noqa: E402
from interp.cache.sparse_formats import iter_sparse_batches, read_sparse  # noqa: E402
from interp.capture import capture  # noqa: E402
from interp.encode import sparse_hook_formats  # noqa: E402
from interp.errors import CacheError, ConfigError  # noqa: E402
from interp.extract import ExtractConfig, extract  # noqa: E402
from interp.kernels import decode  # noqa: E402
from interp.sources import token_blocks  # noqa: E402

HOOK = "blocks.1.hook_resid_post"
D_SAE, K = 256, 8


def _fvu(x, xhat):
    x, xhat = x.double(), xhat.double()
    return float(((xhat - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory):
    from sae_lens import TopKSAE, TopKSAEConfig

    torch.manual_seed(0)
    sae = TopKSAE(TopKSAEConfig(d_in=32, d_sae=D_SAE, k=K))
    with torch.no_grad():  # unit decoder rows, tied encoder, zero biases: a random but sensible dictionary
        w = torch.randn(D_SAE, 32)
        sae.W_dec.copy_(w / w.norm(dim=1, keepdim=True))
        sae.W_enc.copy_(sae.W_dec.T)
    path = tmp_path_factory.mktemp("sae") / "topk"
    sae.save_model(str(path))
    return path


@pytest.fixture(scope="module")
def sparse_cache(tmp_path_factory, tiny_model, text_file, sae_dir):
    out = tmp_path_factory.mktemp("sparse") / "c"
    hooks, formats = sparse_hook_formats(tiny_model, [HOOK], None, sae=str(sae_dir))
    assert hooks == [HOOK] and formats[HOOK]["format"] == "topk" and formats[HOOK]["k"] == K
    cfg = ExtractConfig(out=str(out), model="tiny", data=str(text_file), tokens=1024, ctx=32, batch_size=8,
                        shard_mb=0.02, hooks=hooks, formats=formats)
    extract(cfg, model=tiny_model, progress=False)
    return out


def test_sae_latents_cached_sparsely_reconstruct(sparse_cache, tiny_model, text_file, sae_dir):
    from interp.saes import load_sae

    sae = load_sae(str(sae_dir))
    reader = open_cache(sparse_cache)
    assert len(reader.shards) > 1 and reader.shape(HOOK) == (D_SAE,)
    blocks = token_blocks(str(text_file), tiny_model.tokenizer, ctx=32, n_tokens=1024)
    x = capture(tiny_model, blocks, hooks=[HOOK], positions="all")[HOOK].reshape(-1, 32)
    with torch.no_grad():
        feats = sae.encode(x)
        xhat_ref = sae.decode(feats)
        s = read_sparse(reader, HOOK)
    assert s.n_rows == 1024 and s.k == K
    assert torch.equal(s.to_dense(torch.float32), feats.bfloat16().float())  # bf16 values of the same latents
    assert torch.equal(reader.read(HOOK, 100, 700).float(), feats[100:700].bfloat16().float())  # densify on demand
    with torch.no_grad():
        xhat = decode(s, sae.W_dec, sae.b_dec, backend="embedding_bag")
    # a random SAE reconstructs far from x (||x̂|| > ||x||): bound the error by the larger of the two norms
    scale = torch.maximum(x.norm(dim=1), xhat_ref.norm(dim=1))
    assert bool(((xhat - xhat_ref).abs().max(1).values <= 1e-2 * scale).all())
    assert abs(_fvu(x, xhat) - _fvu(x, xhat_ref)) < 5e-4
    batches = list(iter_sparse_batches(reader, HOOK, 300))
    assert [b.n_rows for b in batches] == [300, 300, 300, 124]
    assert torch.equal(torch.cat([b.idx for b in batches]), s.idx)
    # storage: every file of this hook against dense bf16 latents
    stored = sum(rec["bytes"] for sh in reader.shards for name, rec in sh.files.items() if name.startswith(HOOK))
    ratio = 1024 * D_SAE * 2 / stored
    assert ratio >= D_SAE * 2 / (K * 6)


def test_hook_z_sae_latents_cached(tmp_path, tiny_model, text_file):
    """An SAE on attn.hook_z saved for sae-lens' per-head splicing (reshape_activations hook_z) caches the latents
    that sae-lens computes from [.., heads, d_head] activations."""
    from sae_lens import TopKSAE, TopKSAEConfig

    from interp.saes import load_sae, save_sae

    hook = "blocks.0.attn.hook_z"
    blocks = token_blocks(str(text_file), tiny_model.tokenizer, ctx=32, n_tokens=512)
    z = capture(tiny_model, blocks, hooks=[hook], positions="all")[hook]
    z = z.reshape(-1, *z.shape[-2:])  # [rows, heads, d_head]
    torch.manual_seed(1)
    sae = TopKSAE(TopKSAEConfig(d_in=z[0].numel(), d_sae=64, k=4))
    path = save_sae(sae, tmp_path / "z", storage_dtype="float32", metadata={"hook_name": hook})
    hooks, formats = sparse_hook_formats(tiny_model, ["blocks.*.hook_resid_post"], None, sae=str(path))
    assert hooks == [hook]  # the SAE's own hook
    extract(ExtractConfig(out=str(tmp_path / "c"), model="tiny", data=str(text_file), tokens=512, ctx=32,
                          batch_size=8, hooks=hooks, formats=formats), model=tiny_model, progress=False)
    with torch.no_grad():
        want = load_sae(path).encode(z)  # sae-lens' own per-head reshaping
    got = read_sparse(open_cache(tmp_path / "c"), hook).to_dense(torch.float32)
    assert want.shape == (512, 64) and torch.equal(got, want.bfloat16().float())


@pytest.mark.parametrize("batch_size,shard_mb", [(8, 0.01), (2, 0.05)])
def test_threshold_activations_csr_cache(tmp_path, tiny_model, text_file, batch_size, shard_mb):
    """CSR rows selected batch by batch (several batches a shard in the second case: their offsets are joined)
    equal the thresholded dense capture."""
    hooks, formats = sparse_hook_formats(tiny_model, ["blocks.0.hook_resid_post"], "threshold", threshold=0.8)
    cfg = ExtractConfig(out=str(tmp_path / "c"), model="tiny", data=str(text_file), tokens=512, ctx=32,
                        batch_size=batch_size, shard_mb=shard_mb, hooks=hooks, formats=formats)
    extract(cfg, model=tiny_model, progress=False)
    reader = open_cache(tmp_path / "c")
    per_shard = reader.manifest.layout["blocks_per_shard"]
    assert len(reader.shards) > 1 and (per_shard > batch_size) == (batch_size == 2)
    blocks = token_blocks(str(text_file), tiny_model.tokenizer, ctx=32, n_tokens=512)
    x = capture(tiny_model, blocks, hooks=hooks, positions="all")[hooks[0]].reshape(-1, 32)
    ref = (x * (x.abs() > 0.8)).bfloat16()
    s = read_sparse(reader, hooks[0], 37, 400)
    assert s.is_csr and torch.equal(s.to_dense(), ref[37:400])
    assert torch.equal(reader.gather(hooks[0], np.array([5, 300, 5])), ref[[5, 300, 5]])
    assert read_sparse(reader, hooks[0], 10, 10).n_rows == 0


def test_sparse_errors(tiny_model, sparse_cache, sae_dir, tmp_path):
    from interp.saes import load_sae, save_sae

    named = save_sae(load_sae(sae_dir), tmp_path / "named", storage_dtype="float32", metadata={"hook_name": HOOK})
    with pytest.raises(ConfigError, match="trained on blocks.1.hook_resid_post, not on blocks.0.hook_resid_post"):
        sparse_hook_formats(tiny_model, ["blocks.0.hook_resid_post"], None, sae=str(named))
    with pytest.raises(ConfigError, match="needs --k") as err:
        sparse_hook_formats(tiny_model, [HOOK], "topk")  # no k: say which flag, not "got None"
    assert "None" not in err.value.message
    with pytest.raises(ConfigError):
        sparse_hook_formats(tiny_model, [HOOK], None)
    reader = open_cache(sparse_cache)
    with pytest.raises(ConfigError):
        read_sparse(reader, HOOK, 5, 2)
    with pytest.raises(CacheError):
        read_sparse(reader, "blocks.0.hook_resid_post")


def test_feature_index_and_stats_over_the_cache(sparse_cache, tmp_path):
    """CSC index over the cached latents: counts, per-latent max and top examples equal dense brute force."""
    from interp.cache.sparse import read_feature_major_shard
    from interp.cache.sparse_formats import build_feature_index
    from interp.kernels import latent_stats, stream_to_device

    reader = open_cache(sparse_cache)
    dense = reader.read(HOOK).float()
    fm, rec = build_feature_index(reader, HOOK, tmp_path / "fi.safetensors")
    assert torch.equal(fm.counts(), torch.bincount(read_sparse(reader, HOOK).flat_idx().long(), minlength=D_SAE))
    back = read_feature_major_shard(tmp_path / "fi.safetensors", rec)
    assert torch.equal(back.rows, fm.rows) and torch.equal(back.offsets, fm.offsets)
    st = latent_stats(back, n_top=2)
    nz = dense != 0
    assert torch.equal(st.count, nz.sum(0))
    fires = st.count > 0
    assert torch.equal(st.max[fires], dense.max(0).values[fires])
    j = int(torch.argmax(st.count))
    assert set(st.top_rows[j].tolist()) <= set(torch.nonzero(dense[:, j] >= st.top_vals[j, 1]).flatten().tolist())
    # on the CPU the streamer yields batches unchanged
    batches = list(iter_sparse_batches(reader, HOOK, 500))
    assert [b.idx.data_ptr() for b in stream_to_device(iter(batches), "cpu")] == [b.idx.data_ptr() for b in batches]


def test_gather_decodes_only_the_asked_rows(sparse_cache, tmp_path, tiny_model, text_file, monkeypatch):
    """gather on top-k and CSR hooks equals the densified rows (any order, repeats, across shards) and never
    densifies a whole shard."""
    import interp.cache.formats as formats

    reader = open_cache(sparse_cache)
    rows = np.array([1023, 0, 517, 5, 5, 300, 999])
    ref = reader.read(HOOK)[torch.as_tensor(rows)]
    hooks, fmts = sparse_hook_formats(tiny_model, ["blocks.0.hook_resid_post"], "threshold", threshold=0.8)
    cfg = ExtractConfig(out=str(tmp_path / "csr"), model="tiny", data=str(text_file), tokens=512, ctx=32,
                        batch_size=8, shard_mb=0.01, hooks=hooks, formats=fmts)
    extract(cfg, model=tiny_model, progress=False)
    csr = open_cache(tmp_path / "csr")
    csr_rows = np.array([511, 3, 3, 260, 0])
    csr_ref = csr.read(hooks[0])[torch.as_tensor(csr_rows)]
    for name in ("topk", "threshold"):  # whole-shard decoding is now an error
        monkeypatch.setattr(formats.get(name), "decode", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert torch.equal(reader.gather(HOOK, rows), ref)
    assert torch.equal(csr.gather(hooks[0], csr_rows), csr_ref)
    assert set(reader.shard_arrays(HOOK, 0)) == {"idx", "val"}


def test_where_sparse_hooks_were_encoded_is_part_of_the_identity(tmp_path, tiny_model, text_file, sae_dir):
    """A GPU encodes and selects SAE latents on the device (other last bits, other tie order than the host), so
    the spec records the device kind there; on the CPU the spec is unchanged (older caches resume), and a cache
    encoded on a GPU is not resumed on the CPU."""
    import json

    from interp.encode import with_encode_device

    hooks, formats = sparse_hook_formats(tiny_model, [HOOK], None, sae=str(sae_dir))
    assert with_encode_device(formats, "cpu") == formats
    on_gpu = with_encode_device({**formats, "x": {"format": "dense"}}, "cuda:0")
    assert on_gpu[HOOK] == {**formats[HOOK], "encode_device": "cuda"} and on_gpu["x"] == {"format": "dense"}
    cfg = ExtractConfig(out=str(tmp_path / "c"), model="tiny", data=str(text_file), tokens=256, ctx=32,
                        batch_size=8, shard_mb=0.02, hooks=hooks, formats=formats)
    extract(cfg, model=tiny_model, progress=False)
    doc = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert "encode_device" not in doc["identity"]["formats"][HOOK]
    doc["identity"]["formats"][HOOK]["encode_device"] = "cuda"  # as if a GPU had started it
    doc["status"], doc["shards"] = "in_progress", doc["shards"][:1]
    (tmp_path / "c" / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(CacheError, match="cannot resume .*formats.*encode_device"):
        extract(dataclasses.replace(cfg, resume=True), model=tiny_model, progress=False)
