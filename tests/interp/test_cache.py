"""The on-disk cache: contents equal in-memory capture, reads agree, manifest round-trips, bad input is refused."""

import json

import numpy as np
import pytest
import torch

from helpers import extract_config
from interp.cache import Manifest, open_cache
from interp.capture import capture
from interp.errors import CacheCorruptError, CacheError, ConfigError
from interp.extract import ExtractConfig, extract
from interp.sources import token_blocks

HOOKS = ["blocks.*.hook_resid_post", "blocks.0.attn.hook_z"]


def _cfg(out, model_dir, data, **kw):
    return extract_config(out, model_dir, data, **{"tokens": 2048, "batch_size": 8, "shard_mb": 0.05, "hooks": HOOKS,
                                                   **kw})


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory, tiny_neox_dir, text_file):
    out = tmp_path_factory.mktemp("cache") / "c"
    extract(_cfg(out, tiny_neox_dir, text_file), progress=False)
    return out


def test_cache_equals_capture(cache_dir, tiny_model, text_file):
    reader = open_cache(cache_dir)
    blocks = token_blocks(str(text_file), tiny_model.tokenizer, ctx=32, n_tokens=2048)
    assert reader.n_rows == blocks.numel() == 2048
    ref = capture(tiny_model, blocks, hooks=HOOKS, positions="all")
    for name, value in ref.items():
        got = reader.read(name)
        assert torch.equal(got, value.reshape(-1, *value.shape[2:])), name
    tok = reader.tokens
    assert torch.equal(tok[:, 0], blocks.reshape(-1))
    assert torch.equal(tok[:, 1], torch.arange(len(blocks)).repeat_interleave(32))
    assert torch.equal(tok[:, 2], torch.arange(32).repeat(len(blocks)))


def test_index_iteration_and_gather_agree(cache_dir):
    reader = open_cache(cache_dir)
    hook = "blocks.1.hook_resid_post"
    full = reader.read(hook)
    assert len(reader.shards) > 2  # the reads below cross shard boundaries
    assert torch.equal(torch.cat(list(reader.iter_batches(hook, 300))), full)
    idx = np.random.default_rng(0).integers(0, reader.n_rows, 500)
    assert torch.equal(reader.gather(hook, idx), full[idx])
    assert torch.equal(reader[hook, 700:1300], full[700:1300])
    assert torch.equal(reader[hook, 5], full[5])
    # integer scalars as numpy/torch give them (argmax), negative rows as in Python, bool masks, tensors of rows
    for i in (np.int64(7), torch.tensor(7), np.array(7)):
        assert torch.equal(reader[hook, i], full[7])
    assert torch.equal(reader[hook, -1], full[-1])
    mask = np.zeros(reader.n_rows, dtype=bool)
    mask[[3, 900, 1400]] = True
    assert torch.equal(reader.gather(hook, mask), full[[3, 900, 1400]])
    assert torch.equal(reader[hook, torch.tensor([1400, 2])], full[[1400, 2]])
    for bad in (np.array([[1, 500], [3, 4]]), np.array([1.5, 2.0]), mask[:10]):  # refused, never cast silently
        with pytest.raises(ConfigError):
            reader.gather(hook, bad)
    with pytest.raises(ConfigError, match="out of range"):
        reader[hook, reader.n_rows]
    shuffled = torch.cat(list(reader.iter_batches(hook, 256, shuffle=True, seed=3)))
    assert torch.equal(shuffled.sort(0).values, full.sort(0).values)
    halves = [torch.cat(list(reader.iter_batches(hook, 256, rank=r, world=2))) for r in (0, 1)]
    assert sum(len(h) for h in halves) == reader.n_rows


def test_manifest_round_trip_and_contents(cache_dir):
    m = Manifest.load(cache_dir)
    again = Manifest.from_json(json.loads(json.dumps(m.to_json())))
    assert again.to_json() == m.to_json()
    doc = json.loads((cache_dir / "manifest.json").read_text())
    assert doc["status"] == "complete" and doc["n_rows"] == 2048
    assert doc["identity"]["hooks"] == ["blocks.0.attn.hook_z", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    assert doc["hooks"]["blocks.0.attn.hook_z"]["shape"] == [4, 8]
    assert all(set(f) == {"xxh3_128", "bytes"} and len(f["xxh3_128"]) == 32 for s in doc["shards"]
               for f in s["files"].values())
    assert "torch" in doc["environment"]["versions"]


def test_manifest_bytes_stay_the_document_as_shards_are_appended(tmp_path, cache_dir):
    """Shard lines are encoded once and reused; after appends, out-of-order merges and status changes the written
    bytes still parse to exactly `to_json()` (shards by index, one line each)."""
    m = Manifest.load(cache_dir)
    grown = Manifest(m.identity, m.hooks, m.layout, environment=m.environment)
    for s in reversed(m.shards):  # the merge appends other ranks' shards out of order
        grown.shards.append(s)
        grown.save(tmp_path)
        doc = json.loads((tmp_path / "manifest.json").read_text())
        assert doc == grown.to_json() and [s["index"] for s in doc["shards"]] == sorted(s.index for s in grown.shards)
    grown.status, grown.summary, grown.shards = "complete", m.summary, list(m.shards)
    text = grown.to_bytes().decode()
    assert json.loads(text) == m.to_json()
    assert sum(line.startswith('  {"index"') for line in text.splitlines()) == len(m.shards)
    assert json.loads(Manifest(m.identity, {}, {}).to_bytes())["shards"] == []


def _split_by_rank(m: Manifest, world: int) -> list[Manifest]:
    return [Manifest(m.identity, m.hooks, m.layout, shards=[s for s in m.shards if s.index % world == r],
                     environment=m.environment) for r in range(world)]


def test_rank_merge_waits_for_a_manifest_that_shows_late(tmp_path, cache_dir):
    """On a network file system another host's manifest may appear after the barrier: the merge waits for it."""
    import threading

    from interp.extract import _merge_rank_manifests

    m = Manifest.load(cache_dir)
    parts = _split_by_rank(m, 3)
    parts[0].save(tmp_path, "manifest.rank0.json")
    parts[1].save(tmp_path, "manifest.rank1.json")
    late = threading.Timer(0.6, parts[2].save, (tmp_path, "manifest.rank2.json"))
    late.start()
    merged = _merge_rank_manifests(tmp_path, 3, m.n_rows, wait_s=30)
    late.join()
    assert merged.to_json()["shards"] == m.to_json()["shards"]


def test_rank_merge_refuses_an_incomplete_union(tmp_path, cache_dir):
    from interp.extract import _merge_rank_manifests

    m = Manifest.load(cache_dir)
    parts = _split_by_rank(m, 2)
    parts[0].save(tmp_path, "manifest.rank0.json")
    lost = parts[1].shards.pop()  # rank 1 lost its last shard
    parts[1].save(tmp_path, "manifest.rank1.json")
    lost_rows = lost.rows[1] - lost.rows[0]
    assert lost_rows > 0
    with pytest.raises(CacheError, match=f"{m.n_rows - lost_rows} rows, expected {m.n_rows}"):
        _merge_rank_manifests(tmp_path, 2, m.n_rows, wait_s=0.3)


def test_bf16_and_position_selector(tmp_path, tiny_neox_dir, text_file, tiny_model):
    out = tmp_path / "bf"
    extract(_cfg(out, tiny_neox_dir, text_file, dtype="bf16", positions="drop:1", hooks=["blocks.1.hook_resid_post"]),
            progress=False)
    reader = open_cache(out)
    blocks = token_blocks(str(text_file), tiny_model.tokenizer, ctx=32, n_tokens=2048)
    ref = capture(tiny_model, blocks, hooks="blocks.1.hook_resid_post", positions="drop:1", dtype=torch.bfloat16)
    got = reader.read("blocks.1.hook_resid_post")
    assert got.dtype == torch.bfloat16 and torch.equal(got, ref["blocks.1.hook_resid_post"])
    assert reader.n_rows == 64 * 31 and reader.tokens[:, 2].min() == 1


def test_existing_cache_refused_without_flags(cache_dir, tiny_neox_dir, text_file):
    with pytest.raises(CacheError, match="already holds a cache"):
        extract(_cfg(cache_dir, tiny_neox_dir, text_file), progress=False)


def test_resume_with_other_options_refused(cache_dir, tiny_neox_dir, text_file):
    with pytest.raises(CacheError, match="differs from the one that started it.*ctx"):
        extract(_cfg(cache_dir, tiny_neox_dir, text_file, ctx=16, resume=True), progress=False)


def test_foreign_folder_never_deleted(tmp_path, tiny_neox_dir, text_file):
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(CacheError, match="not an interp cache"):
        extract(_cfg(tmp_path, tiny_neox_dir, text_file, overwrite=True), progress=False)
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_bad_sizes_refused(tmp_path, tiny_neox_dir, text_file):
    with pytest.raises(ConfigError, match="less than one block"):
        extract(_cfg(tmp_path / "x", tiny_neox_dir, text_file, tokens=10), progress=False)
    with pytest.raises(CacheError, match="ran out"):
        extract(_cfg(tmp_path / "y", tiny_neox_dir, text_file, tokens=10**6), progress=False)
    np.save(tmp_path / "ids.npy", np.arange(100, dtype=np.int32))  # 3 blocks of 32: refused before any work
    with pytest.raises(CacheError, match=r"ran out after 96 of 1,024 tokens.*--tokens 96"):
        extract(_cfg(tmp_path / "z", tiny_neox_dir, str(tmp_path / "ids.npy"), tokens=1024), progress=False)
    assert not (tmp_path / "z" / "manifest.json").exists() and not list((tmp_path / "z").glob("*.npy"))


def test_flipped_byte_and_truncation_detected(tmp_path, cache_dir):
    import shutil

    copy = tmp_path / "c"
    shutil.copytree(cache_dir, copy)
    m = Manifest.load(copy)
    victim = copy / sorted(m.shards[1].files)[0]
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0xFF
    victim.write_bytes(bytes(data))
    reader = open_cache(copy)
    problems = reader.verify_all()
    assert len(problems) == 1 and victim.name in problems[0]
    hook = "blocks.0.attn.hook_z" if "attn" in victim.name else None
    if hook:
        with pytest.raises(CacheCorruptError, match=victim.name):
            reader.read(hook)
    victim.write_bytes(bytes(data[:-100]))
    assert "truncated" in open_cache(copy).verify_all()[0]


def test_to_hf_dataset_trains_sae_lens_sae(cache_dir):
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    reader = open_cache(cache_dir)
    hook = "blocks.1.hook_resid_post"
    ds = reader.to_hf_dataset(hook)
    assert len(ds) == 64
    row = ds[0]
    np.testing.assert_array_equal(np.asarray(row[hook], dtype=np.float32), reader.read(hook, 0, 32).numpy())
    assert list(row["token_ids"]) == reader.tokens[:32, 0].tolist()
    # The same reader feeds sae-lens' own trainer as its data provider.
    from sae_lens.config import SAETrainerConfig

    torch.manual_seed(0)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=32, d_sae=64, k=4))
    x = reader.read(hook, 0, 512).float()

    def fvu():
        with torch.no_grad():
            return (((sae.decode(sae.encode(x)) - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()).item()

    before = fvu()
    cfg = SAETrainerConfig(total_training_samples=256 * 40, train_batch_size_samples=256, lr=1e-2, lr_end=1e-2,
                           n_batches_for_norm_estimate=2)
    SAETrainer(cfg=cfg, sae=sae, data_provider=reader.activation_provider(hook, batch_size=256)).fit()
    assert fvu() < 0.7 * before


def test_plain_module_extraction_stores_token_rows(tmp_path):
    """A Hugging Face module used as a plain nn.Module (hooks = module paths) caches one row per token."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from helpers import CORPUS, VOCAB, tiny_tokenizer

    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=4, intermediate_size=64,
                                             max_position_embeddings=64)).eval()
    model.tokenizer = tiny_tokenizer()
    extract(ExtractConfig(out=str(tmp_path / "m"), model="hf-module", data=CORPUS, tokens=512, ctx=32,
                          batch_size=4, hooks=["gpt_neox.layers.1"]), model=model, progress=False)
    reader = open_cache(tmp_path / "m")
    blocks = token_blocks(CORPUS, model.tokenizer, ctx=32, n_tokens=512)
    grabbed = []
    handle = model.gpt_neox.layers[1].register_forward_hook(lambda m, i, o: grabbed.append(o[0] if isinstance(o, tuple)
                                                                                        else o))
    with torch.no_grad():
        model(blocks)
    handle.remove()
    ref = grabbed[0]
    assert reader.shape("gpt_neox.layers.1") == (32,)
    assert torch.allclose(reader.read("gpt_neox.layers.1"), ref.reshape(-1, 32), atol=1e-5)


def test_summary_times_each_phase(tmp_path, tiny_neox_dir, text_file):
    """ExtractSummary.timings splits the run's wall time into phases that add up to it (and the manifest keeps
    them), so a slow extraction says where its time went."""
    s = extract(_cfg(tmp_path / "t", tiny_neox_dir, text_file), progress=False)
    t = s.timings
    assert set(t) == {"setup", "probe", "capture", "encode", "writer_wait", "drain", "finish", "other"}
    assert min(t.values()) >= 0 and t["capture"] > 0 and t["probe"] > 0
    inside = t["probe"] + t["capture"] + t["encode"] + t["writer_wait"] + t["drain"] + t["other"]
    # the phases partition the run (none overlap, "other" is the rest): equal up to rounding each to 4 decimals
    assert abs(inside - s.seconds) <= 6 * 5e-5 + 1e-9
    kept = json.loads((tmp_path / "t" / "manifest.json").read_text())["summary"]["timings_last_run"]
    assert abs(kept["capture"] - t["capture"]) <= 1e-3  # kept to 3 decimals, the summary to 4


@pytest.mark.parametrize("array", [
    np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    np.asfortranarray(np.arange(12, dtype=np.int16).reshape(3, 4)),  # stored C-ordered, as the cache reads it
    np.arange(10, dtype=np.int64)[::3],
    np.zeros((0, 5), dtype=np.uint16),
    np.array(3.5),  # stays 0-d
    np.array(["2020-01-01", "2021-02-03"], dtype="M8[s]"),  # a dtype without a buffer format
    np.arange(4, dtype=">f4"),
    np.array([True, False, True]),
    np.zeros((1,) * 64, dtype=np.uint8),
    np.random.default_rng(0).standard_normal((300, 1000)).astype(np.float16),
])
def test_shard_files_are_the_bytes_np_save_writes(tmp_path, array):
    """Shard files are exactly np.save's bytes; the recorded xxh3_128 and size are those of the file."""
    import io

    import xxhash

    from interp.cache.shards import write_npy_atomic

    ref = io.BytesIO()
    np.save(ref, np.require(array, requirements="C"), allow_pickle=False)
    rec = write_npy_atomic(tmp_path / "a.npy", array)
    data = (tmp_path / "a.npy").read_bytes()
    assert data == ref.getvalue()
    assert rec == {"xxh3_128": xxhash.xxh3_128(data).hexdigest(), "bytes": len(data)}


def test_summary_line_says_whose_counts_under_torchrun():
    from interp.extract import ExtractSummary

    args = ("c/", 4096, 4096, 8, 2**20, 1.0, 2048.0, 4, 0)
    assert "(4 written, 0 resumed)" in ExtractSummary(*args).line()
    line = ExtractSummary(*args, rank=0, world=2).line()
    assert "(4 written by rank 0 of 2, 0 resumed)" in line and "tokens/s by rank 0 of 2" in line
