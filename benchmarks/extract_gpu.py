"""Extraction at real model scale on one GPU, side by side with what researchers use instead (issue 23).

One process, one GPU, one random-weight bf16 model at a time (transformer-lens HookedTransformer built from a
HookedTransformerConfig: no downloads), the same pre-tokenized blocks and hook for every variant:

  a_full     bare forward, logits (no hooks)
  a_body     bare forward of the body: stop_at_layer=n_layers (no final norm, no unembedding)
  b_one      interp extract, dense bf16, the last block's residual (`blocks.{L-1}.hook_resid_post`)
  b_all      interp extract, dense bf16, every residual hook (`blocks.*.hook_resid_post`), default flags
  b_all_tuned  the same with flags chosen for it (smaller batch -> smaller shards, more writer threads)
  b_sparse   interp extract --sae DIR --sparse topk on the last residual (random-weight sae-lens TopK SAE)
  c_hand     the loop a user writes: run_with_hooks + forward hook, .cpu(), safetensors.save_file per batch
  d_saelens  sae-lens CacheActivationsRunner on the same model, blocks and hook (HF datasets Arrow shards)
  e_nnsight  nnsight NNsight(model).trace(...) + .save(), .cpu(), safetensors per batch

Variants are interleaved (order rotated every repeat) and the median is reported. Every interp cache of the first
repeat is checked against a plain capture of the same batches (first and last shard, bit for bit, every file).
tokens/s counts input tokens. Outputs go to --shm-dir (tmpfs) and, for the writing variants, also to --disk-dir.

    python benchmarks/extract_gpu.py --device cpu --model tiny                       # seconds, on the CPU
    python3 benchmarks/extract_gpu.py --model pythia-1.4b llama-8b --out $OUT/extract_gpu.md   # on the GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import threading
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _stub_wandb() -> str | None:
    """transformer-lens and sae-lens import wandb at module level but only call it while training; the GPU image
    has no wandb (a 20 MB wheel the working tree cannot carry), so a stub module stands in when it is missing."""
    try:
        import wandb  # noqa: F401
        return None
    except ImportError:
        pass

    class _Any:
        def __init__(self, *a, **k): ...
        def __call__(self, *a, **k): return _Any()
        def __getattr__(self, name): return _attr(name)

    def _attr(name: str):
        if name.startswith("__"):  # inspect and pickle probe dunders: a stub must not pretend to have them
            raise AttributeError(name)
        return _Any()

    mod = types.ModuleType("wandb")
    mod.__getattr__ = _attr  # type: ignore[attr-defined]
    mod.__path__ = []  # type: ignore[attr-defined]
    import importlib.machinery

    mod.__spec__ = importlib.machinery.ModuleSpec("wandb", None)  # importlib.util.find_spec("wandb") asks for it
    sys.modules["wandb"] = mod
    return "wandb stubbed (not installed)"


# d_model, n_layers, n_heads, d_head, d_mlp, d_vocab, kind, [n_kv_heads], default (ctx, batch, tokens, tokens_all,
# batch_all_tuned, tokens_sparse, d_sae, k)
MODELS = {
    "tiny": dict(d_model=64, n_layers=2, n_heads=4, d_head=16, d_mlp=256, d_vocab=1024, kind="neox", rotary_dim=4,
                 run=dict(ctx=128, batch=4, tokens=16384, tokens_all=8192, batch_all=2, tokens_sparse=4096,
                          d_sae=512, k=16)),
    "pythia-410m": dict(d_model=1024, n_layers=24, n_heads=16, d_head=64, d_mlp=4096, d_vocab=50304, kind="neox",
                        rotary_dim=16, run=dict(ctx=2048, batch=32, tokens=2 ** 20, tokens_all=2 ** 18, batch_all=4,
                                                tokens_sparse=2 ** 16, d_sae=16384, k=64)),
    "pythia-1.4b": dict(d_model=2048, n_layers=24, n_heads=16, d_head=128, d_mlp=8192, d_vocab=50304, kind="neox",
                        rotary_dim=32, run=dict(ctx=2048, batch=16, tokens=2 ** 19, tokens_all=2 ** 17, batch_all=2,
                                                tokens_sparse=2 ** 15, d_sae=32768, k=64)),
    "llama-8b": dict(d_model=4096, n_layers=32, n_heads=32, d_head=128, d_mlp=14336, d_vocab=128256, kind="llama",
                     n_kv=8, run=dict(ctx=2048, batch=8, tokens=2 ** 17, tokens_all=2 ** 16, batch_all=1,
                                      tokens_sparse=2 ** 14, d_sae=65536, k=64)),
}
ALL_VARIANTS = ("a_full", "a_body", "b_one", "b_all", "b_all_tuned", "b_sparse", "c_hand", "c_sparse_gpu", "d_saelens",
                "e_nnsight")
WRITING = ("b_one", "b_all", "b_all_tuned", "b_sparse", "c_hand", "c_sparse_gpu", "d_saelens", "e_nnsight")
PHASES = ("setup", "probe", "capture", "encode", "writer_wait", "drain", "finish", "other")


def build_model(name: str, device: str, dtype):
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from interp.models import DEFAULT_MODEL, load_tokenizer

    m = MODELS[name]
    common = dict(d_model=m["d_model"], n_layers=m["n_layers"], n_heads=m["n_heads"], d_head=m["d_head"],
                  d_mlp=m["d_mlp"], d_vocab=m["d_vocab"], n_ctx=max(2048, m["run"]["ctx"]), dtype=dtype,
                  device=device, positional_embedding_type="rotary", model_name=f"random-{name}", seed=0)
    if m["kind"] == "neox":
        cfg = HookedTransformerConfig(**common, act_fn="gelu", normalization_type="LN", rotary_dim=m["rotary_dim"],
                                      parallel_attn_mlp=True, original_architecture="GPTNeoXForCausalLM")
    else:
        cfg = HookedTransformerConfig(**common, act_fn="silu", normalization_type="RMS", gated_mlp=True,
                                      n_key_value_heads=m["n_kv"], rotary_dim=m["d_head"], rotary_base=500000,
                                      final_rms=True, eps=1e-5, original_architecture="LlamaForCausalLM")
    torch.manual_seed(0)
    with torch.device(device):
        model = HookedTransformer(cfg, move_to_device=False).eval()
    model.to(device)
    model.tokenizer = load_tokenizer(DEFAULT_MODEL)  # ids < 863 fit every model's embedding; a file needs one
    return model


def write_sae(path: Path, d_in: int, d_sae: int, k: int, hook: str) -> Path:
    """A random-weight sae-lens TopK SAE folder (cfg.json + safetensors), as `interp extract --sae` takes."""
    import torch
    from sae_lens import TopKSAE, TopKSAEConfig

    from interp.saes import save_sae

    torch.manual_seed(1)
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_(0, d_in ** -0.5)
    return save_sae(sae, path, storage_dtype="float32", metadata={"hook_name": hook})


class GpuSampler:
    """utilization.gpu from NVML every 50 ms while a variant runs (the share of time some kernel was running)."""

    def __init__(self):
        self.samples: list[int] = []
        self.handle = None
        try:
            import pynvml

            pynvml.nvmlInit()
            index = int(os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or 0)
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.nvml = pynvml
        except Exception:  # noqa: BLE001 - no GPU, no NVML: utilisation is reported as '-'
            self.handle = None

    def __enter__(self):
        self.samples, self.stop = [], threading.Event()
        if self.handle is not None:
            self.thread = threading.Thread(target=self._loop, daemon=True)
            self.thread.start()
        return self

    def _loop(self):
        while not self.stop.wait(0.05):
            self.samples.append(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)

    def __exit__(self, *exc):
        self.stop.set()
        if self.handle is not None:
            self.thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None


class Bench:
    def __init__(self, a, name: str):
        import numpy as np
        import torch

        self.a, self.name, self.torch, self.np = a, name, torch, np
        self.m = MODELS[name]
        r = dict(self.m["run"])
        r["tokens_saelens"] = r["tokens"] // 4  # Arrow conversion runs at ~0.1 GB/s: fewer tokens, same ratio
        for key in ("ctx", "batch", "tokens", "tokens_all", "batch_all", "tokens_sparse", "tokens_saelens"):
            if getattr(a, key, None):
                r[key] = getattr(a, key)
        self.r = r
        self.device = a.device
        self.dtype = torch.bfloat16 if a.device.startswith("cuda") else torch.float32
        self.model = build_model(name, a.device, self.dtype)
        L = self.m["n_layers"]
        self.hook = f"blocks.{L - 1}.hook_resid_post"
        self.work = {fs: Path(d) / f"extract-gpu-{name}" for fs, d in (("shm", a.shm_dir), ("disk", a.disk_dir))}
        for d in self.work.values():
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        # the same blocks for everyone: random ids below the tokenizer's vocabulary, one .npy on tmpfs
        need = max(r["tokens"], r["tokens_all"], r["tokens_sparse"]) // r["ctx"]
        vocab = min(len(self.model.tokenizer), self.m["d_vocab"])
        self.blocks = np.random.default_rng(0).integers(0, vocab, size=(need, r["ctx"]), dtype=np.int64)
        self.token_file = self.work["shm"] / "tokens.npy"
        np.save(self.token_file, self.blocks)
        self.sae_dir = None
        self.gpu = GpuSampler()

    # ---- helpers
    def sync(self):
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def batches(self, n_tokens: int, batch: int):
        n = n_tokens // self.r["ctx"]
        for i in range(0, n, batch):
            yield i, self.torch.from_numpy(self.blocks[i:i + batch]).to(self.device, non_blocking=True)

    def out_dir(self, fs: str, variant: str) -> Path:
        p = self.work[fs] / variant
        shutil.rmtree(p, ignore_errors=True)
        return p

    # ---- (a) bare forward
    def a_full(self, fs):
        with self.torch.inference_mode():
            for _, t in self.batches(self.r["tokens"], self.r["batch"]):
                self.model(t, return_type="logits")
        return dict(tokens=self.r["tokens"])

    def a_body(self, fs):
        with self.torch.inference_mode():
            for _, t in self.batches(self.r["tokens"], self.r["batch"]):
                self.model(t, stop_at_layer=self.m["n_layers"])
        return dict(tokens=self.r["tokens"])

    def a_body_all(self, fs):  # the baseline at b_all's token count and batch (same work, fewer tokens)
        with self.torch.inference_mode():
            for _, t in self.batches(self.r["tokens_all"], self.r["batch"]):
                self.model(t, stop_at_layer=self.m["n_layers"])
        return dict(tokens=self.r["tokens_all"])

    # ---- (b) interp extract
    def _extract(self, fs, variant, hooks, tokens, batch, writer_threads, formats=None):
        from interp.extract import ExtractConfig, extract

        out = self.out_dir(fs, variant)
        cfg = ExtractConfig(out=str(out), model=f"random-{self.name}", data=str(self.token_file), tokens=tokens,
                            ctx=self.r["ctx"], batch_size=batch, dtype="bfloat16", hooks=hooks, device=self.device,
                            overwrite=True, shard_mb=self.a.shard_mb, writer_threads=writer_threads,
                            formats=formats or {})
        s = extract(cfg, model=self.model, progress=False)
        return dict(tokens=s.n_tokens, bytes=s.bytes, shards=s.n_shards, timings=s.timings, out=out, batch=batch,
                    writer_threads=writer_threads or "auto")

    def b_one(self, fs):
        return self._extract(fs, "b_one", [self.hook], self.r["tokens"], self.r["batch"], self.a.writer_threads)

    def b_all(self, fs):
        return self._extract(fs, "b_all", ["blocks.*.hook_resid_post"], self.r["tokens_all"], self.r["batch"],
                             self.a.writer_threads)

    def b_all_tuned(self, fs):
        return self._extract(fs, "b_all_tuned", ["blocks.*.hook_resid_post"], self.r["tokens_all"],
                             self.r["batch_all"], self.a.tuned_writer_threads)

    def prepare_sparse(self):
        """The SAE folder written and loaded (interp keeps it per process) before the timed runs, as a model is."""
        try:
            from interp.encode import sparse_hook_formats
        except ImportError:  # before the SAE side moved out of the cache formats
            from interp.cache.sparse_formats import sparse_hook_formats

        self.sae_dir = write_sae(self.work["shm"] / "sae", self.m["d_model"], self.r["d_sae"], self.r["k"], self.hook)
        self.sparse = sparse_hook_formats(self.model, [self.hook], "topk", k=self.r["k"], sae=str(self.sae_dir),
                                          value_dtype="bfloat16")

    def b_sparse(self, fs):
        hooks, formats = self.sparse
        res = self._extract(fs, "b_sparse", hooks, self.r["tokens_sparse"], self.r["batch"], self.a.writer_threads,
                            formats)
        res["d_sae"], res["k"] = self.r["d_sae"], self.r["k"]
        return res

    # ---- (c) hand-written loop
    def c_hand(self, fs):
        from safetensors.torch import save_file

        out = self.out_dir(fs, "c_hand")
        out.mkdir(parents=True)
        got = {}

        def keep(x, hook):
            got["x"] = x

        nbytes = 0
        with self.torch.inference_mode():
            for i, t in self.batches(self.r["tokens"], self.r["batch"]):
                self.model.run_with_hooks(t, return_type=None, fwd_hooks=[(self.hook, keep)])
                x = got.pop("x").reshape(-1, self.m["d_model"]).to(self.torch.bfloat16).cpu()
                save_file({"acts": x, "tokens": t.reshape(-1).cpu()}, str(out / f"batch_{i:06d}.safetensors"))
                nbytes += x.numel() * x.element_size()
        return dict(tokens=self.r["tokens"], bytes=nbytes, out=out)

    def c_sparse_gpu(self, fs):
        """What interp's --sparse topk path could run at: the SAE encode and top-k on the device, only ids and
        values copied to the host (a hand loop, for the proposal in the results; interp encodes on the host)."""
        from safetensors.torch import save_file

        from interp.saes import load_sae

        if getattr(self, "_sae_dev", None) is None:
            self._sae_dev = load_sae(str(self.sae_dir), device=self.device).eval()
        sae, k = self._sae_dev, self.r["k"]
        out = self.out_dir(fs, "c_sparse_gpu")
        out.mkdir(parents=True)
        got, nbytes = {}, 0

        def keep(x, hook):
            got["x"] = x

        with self.torch.inference_mode():
            for i, t in self.batches(self.r["tokens_sparse"], self.r["batch"]):
                self.model.run_with_hooks(t, return_type=None, fwd_hooks=[(self.hook, keep)])
                x = got.pop("x").reshape(-1, self.m["d_model"]).to(self.torch.bfloat16)
                a = sae.encode(x.to(sae.W_enc.dtype))
                idx = self.torch.topk(a, k, dim=-1, sorted=False).indices
                val = a.gather(1, idx).to(self.torch.bfloat16)
                idx, val = idx.to(self.torch.int32).cpu(), val.cpu()
                save_file({"idx": idx, "val": val}, str(out / f"batch_{i:06d}.safetensors"))
                nbytes += idx.numel() * 2 + val.numel() * 2
        return dict(tokens=self.r["tokens_sparse"], bytes=nbytes, out=out)

    # ---- (d) sae-lens CacheActivationsRunner
    def d_saelens(self, fs):
        import sae_lens.cache_activations_runner as car
        from datasets import Dataset
        from sae_lens import CacheActivationsRunner, CacheActivationsRunnerConfig

        out = self.out_dir(fs, "d_saelens")
        tokens = self.r["tokens_saelens"]
        n = tokens // self.r["ctx"]
        if getattr(self, "_ds", None) is None:
            self._ds = Dataset.from_dict({"input_ids": self.blocks[:n]})
        batch_tokens = self.r["batch"] * self.r["ctx"]
        bpt = self.m["d_model"] * 4 if self.a.saelens_dtype == "float32" else self.m["d_model"] * 2
        per_batch = batch_tokens * bpt
        k = max(1, min(n // self.r["batch"], int(2e9 // per_batch)))  # buffers of <= 2 GB (its default)
        while (n // self.r["batch"]) % k:
            k -= 1
        cfg = CacheActivationsRunnerConfig(
            dataset_path="benchmark-blocks", model_name=f"random-{self.name}", model_batch_size=self.r["batch"],
            hook_name=self.hook, d_in=self.m["d_model"], training_tokens=tokens,
            context_size=self.r["ctx"], new_cached_activations_path=str(out), shuffle=False,
            dtype=self.a.saelens_dtype, device=self.device, prepend_bos=False, streaming=False,
            buffer_size_gb=(k * per_batch + 0.5) / 1e9)
        old = car.load_model
        car.load_model = lambda *args, **kw: self.model  # the same in-memory model instead of a hub download
        try:
            runner = CacheActivationsRunner(cfg, override_dataset=self._ds)
            assert cfg.n_buffers * cfg.n_tokens_in_buffer == tokens, (cfg.n_buffers, cfg.n_tokens_in_buffer)
            ds = runner.run()
        finally:
            car.load_model = old
        nbytes = sum(f.stat().st_size for f in out.glob("*.arrow"))
        return dict(tokens=tokens, bytes=nbytes, rows=len(ds) * self.r["ctx"], out=out, dtype=self.a.saelens_dtype)

    # ---- (e) nnsight
    def e_nnsight(self, fs):
        from nnsight import NNsight
        from safetensors.torch import save_file

        out = self.out_dir(fs, "e_nnsight")
        out.mkdir(parents=True)
        if getattr(self, "_nn", None) is None:
            self._nn = NNsight(self.model)
        nn_model, L = self._nn, self.m["n_layers"] - 1
        nbytes = 0
        with self.torch.inference_mode():
            for i, t in self.batches(self.r["tokens"], self.r["batch"]):
                with nn_model.trace(t, return_type=None):
                    h = nn_model.blocks[L].hook_resid_post.output.save()
                x = h.reshape(-1, self.m["d_model"]).to(self.torch.bfloat16).cpu()
                save_file({"acts": x, "tokens": t.reshape(-1).cpu()}, str(out / f"batch_{i:06d}.safetensors"))
                nbytes += x.numel() * x.element_size()
        return dict(tokens=self.r["tokens"], bytes=nbytes, out=out)

    # ---- checks
    def check_interp(self, out: Path, batch: int) -> bool:
        """First and last shard of the cache: every file equals what a plain synchronous capture of the same
        batches encodes to (the format's own encoder, on the host), bit for bit."""
        import numpy as np

        from interp.cache.formats import get as get_format
        from interp.cache.manifest import Manifest
        from interp.cache.shards import STORAGE
        from interp.capture import Capturer
        from interp.encode import encode_rows
        from interp.shard_capture import shard_arrays

        man = Manifest.load(out)
        specs = man.hooks
        cap = Capturer(self.model, list(specs), dtype=self.torch.bfloat16, flatten=True)  # what extract stores
        shards = sorted(man.shards, key=lambda s: s.index)
        for rec in {shards[0].index: shards[0], shards[-1].index: shards[-1]}.values():
            b0, b1 = rec.blocks
            rows = {h: [] for h in specs}
            for i in range(b0, b1, batch):
                t = self.torch.from_numpy(self.blocks[i:min(i + batch, b1)]).to(self.device)
                for h, x in cap(t).items():
                    spec = specs[h]
                    if spec.get("encode_device"):  # encoded and selected on the device, as extraction does there
                        parts = get_format(spec["format"]).select(encode_rows(x, spec), spec)
                        parts["val"] = parts["val"].to(STORAGE[spec["dtype"]][0])
                        rows[h].append({role: v.cpu() for role, v in parts.items()})
                    else:
                        rows[h].append(x.cpu())
            want = shard_arrays(rows, specs, rec.index)
            for fname, arr in want.items():
                got = np.load(out / fname)
                if got.dtype != arr.dtype or got.shape != arr.shape or not np.array_equal(got.view(np.uint8),
                                                                                             arr.view(np.uint8)):
                    print(f"  MISMATCH {out / fname}", flush=True)
                    return False
        return True

    def check_hand(self, out: Path) -> bool:
        """A hand loop's first batch file holds the same activations as interp's first rows (same hook, tokens)."""
        from safetensors.torch import load_file

        first = load_file(str(sorted(Path(out).glob("*.safetensors"))[0]))["acts"]
        return bool(self.torch.equal(self.first_rows.to(self.torch.bfloat16), first))

    # ---- one timed run
    def run(self, variant: str, fs: str) -> dict:
        self.sync()
        with self.gpu:
            t0 = time.perf_counter()
            res = getattr(self, variant)(fs)
            self.sync()
            res["seconds"] = time.perf_counter() - t0
        res["gpu_util"] = self.gpu.mean
        res["tokens_per_s"] = res["tokens"] / res["seconds"]
        return res

    def close(self):
        for d in self.work.values():
            shutil.rmtree(d, ignore_errors=True)


def available(variant: str) -> str | None:
    """None if the variant can run here, else why not."""
    mods = {"d_saelens": ("sae_lens", "datasets"), "e_nnsight": ("nnsight",), "b_sparse": ("sae_lens",),
            "c_sparse_gpu": ("sae_lens",)}
    for mod in mods.get(variant, ()):
        try:
            __import__(mod)
        except Exception as e:  # noqa: BLE001
            return f"{mod} does not import: {type(e).__name__}: {str(e)[:160]}"
    return None


def bench_model(a, name: str, t_start: float, log, deadline: float) -> dict:
    import torch

    t0 = time.perf_counter()
    b = Bench(a, name)
    log(f"== {name}: built in {time.perf_counter() - t0:.1f} s; run {b.r}")
    res: dict = {"model": name, "run": b.r, "hook": b.hook, "runs": {}, "errors": {}, "skipped": {}, "checks": {}}
    variants = [v for v in a.variants if v in ALL_VARIANTS]
    if "b_all" in variants or "b_all_tuned" in variants:
        variants.insert(variants.index("a_body") + 1 if "a_body" in variants else 0, "a_body_all")
    for v in list(variants):
        why = available(v)
        if why:
            res["skipped"][v] = why
            variants.remove(v)
            log(f"  skip {v}: {why}")
    if "b_sparse" in variants or "c_sparse_gpu" in variants:
        t = time.perf_counter()
        b.prepare_sparse()
        log(f"  SAE d_sae={b.r['d_sae']} k={b.r['k']} written and loaded in {time.perf_counter() - t:.1f} s")
    # warm-up: CUDA context, cuBLAS handles, kernels for both batch sizes; one tiny run of every variant
    with torch.inference_mode():
        for bs in {b.r["batch"], b.r["batch_all"]}:
            b.model(torch.from_numpy(b.blocks[:bs]).to(a.device), return_type="logits")
    keys = [(v, "shm") for v in variants]
    keys += [(v, "disk") for v in variants if v in a.disk_variants and v in WRITING]
    for rep in range(a.repeats):
        order = keys[rep % len(keys):] + keys[:rep % len(keys)]  # rotated: drift hits every variant alike
        for v, fs in order:
            if fs == "disk" and rep >= a.disk_repeats:
                continue
            if ((v in ("b_sparse", "c_sparse_gpu") and rep >= a.sparse_repeats)
                    or (v == "d_saelens" and rep >= a.saelens_repeats)):
                continue
            if (v, fs) in res["errors"]:
                continue
            if time.perf_counter() > deadline:
                log(f"  this model's share of --budget-s is spent: stop before {v}/{fs} repeat {rep}")
                res["truncated"] = True
                break
            try:
                r = b.run(v, fs)
            except Exception as e:  # noqa: BLE001 - report it and go on with the other variants
                import traceback

                res["errors"][(v, fs)] = f"{type(e).__name__}: {str(e)[:300]}"
                log(f"  ERROR {v}/{fs}: {traceback.format_exc()[-1500:]}")
                shutil.rmtree(b.work[fs] / v, ignore_errors=True)
                continue
            out = r.pop("out", None)
            if rep == 0 and out is not None and v.startswith("b_"):
                t = time.perf_counter()
                r["check"] = b.check_interp(out, r["batch"])
                res["checks"][f"{v}/{fs}"] = r["check"]
                log(f"  check {v}/{fs}: {r['check']} ({time.perf_counter() - t:.1f} s)")
            if rep == 0 and fs == "shm" and v == "b_one":
                from interp.cache import open_cache

                b.first_rows = open_cache(str(out)).read(b.hook, 0, b.r["batch"] * b.r["ctx"]).clone()
            hand = v in ("c_hand", "e_nnsight") and getattr(b, "first_rows", None) is not None
            if rep == 0 and fs == "shm" and hand:
                res["checks"][f"{v}_first_batch_equals_b_one"] = b.check_hand(out)
            if out is not None:
                shutil.rmtree(out, ignore_errors=True)
            res["runs"].setdefault(f"{v}/{fs}", []).append(r)
            gu = "-" if r["gpu_util"] is None else f"{r['gpu_util']:.0f}%"
            log(f"  rep {rep} {v:12s} {fs:4s} {r['seconds']:7.2f} s {r['tokens_per_s']:12,.0f} tok/s gpu {gu}"
                + (f" timings {r['timings']}" if "timings" in r else ""))
        if res.get("truncated"):
            break
    res["errors"] = {f"{v}/{fs}": e for (v, fs), e in res["errors"].items()}
    b.close()
    del b
    if a.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return res


def median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]


def machine(a) -> dict:
    import platform

    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()}
    for mod in ("triton", "transformer_lens", "sae_lens", "nnsight", "transformers", "datasets", "numpy"):
        try:
            import importlib.metadata as md

            info[mod] = md.version(mod.replace("_", "-"))
        except Exception:  # noqa: BLE001
            info[mod] = "-"
    info["gpu"] = torch.cuda.get_device_name() if a.device.startswith("cuda") else "none (CPU: " + \
        (platform.processor() or platform.machine()) + ")"
    return info


def report(a, info: dict, results: list[dict], notes: list[str]) -> str:
    lines = ["# Extraction at model scale on one device, next to the usual tools (benchmarks/extract_gpu.py)", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"Machine: {info['gpu']}, {info['cpus']} CPU cores; python {info['python']}, torch {info['torch']}, "
             f"triton {info['triton']}, transformer-lens {info['transformer_lens']}, sae-lens {info['sae_lens']}, "
             f"nnsight {info['nnsight']}, transformers {info['transformers']}, datasets {info['datasets']}.  ",
             f"Repeats: {a.repeats} on tmpfs ({a.shm_dir}), {a.disk_repeats} on local disk ({a.disk_dir}); order "
             "rotated every repeat; the median run is shown (of an even count, the faster middle one). tokens/s "
             "counts input tokens; wall time from the first batch to the last byte written (interp: the whole "
             "`extract()` call, setup, probe, drain and manifest included).", ""]
    for n in notes:
        lines.append(f"- {n}")
    for res in results:
        r = res["run"]
        lines += ["", f"## {res['model']} (random weights, {'bf16' if a.device.startswith('cuda') else 'fp32'}), "
                  f"ctx {r['ctx']}, batch {r['batch']}, hook `{res['hook']}`", ""]
        med = {k: median_run(v) for k, v in res["runs"].items()}
        base = {"full": med.get("a_full/shm"), "body": med.get("a_body/shm"), "body_all": med.get("a_body_all/shm")}
        lines += ["| variant | fs | tokens | seconds (median) | every repeat | tokens/s | vs a_full | vs a_body "
                  "| GPU util | MB written |", "|---|---|---|---|---|---|---|---|---|---|"]
        for key, m in med.items():
            v, fs = key.split("/")
            b_full = base["full"]["tokens_per_s"] if base["full"] else None
            b_body = (base["body_all"] if v in ("b_all", "b_all_tuned", "a_body_all") else base["body"])
            b_body = b_body["tokens_per_s"] if b_body else None
            every = ", ".join(f"{x['seconds']:.2f}" for x in res["runs"][key])
            gu = "-" if m["gpu_util"] is None else f"{m['gpu_util']:.0f}%"
            vs_full = f"{m['tokens_per_s'] / b_full:.2f}x" if b_full else "-"
            vs_body = f"{m['tokens_per_s'] / b_body:.2f}x" if b_body else "-"
            lines.append(f"| {v} | {fs} | {m['tokens']:,} | {m['seconds']:.2f} | {every} | {m['tokens_per_s']:,.0f} | "
                         f"{vs_full} | {vs_body} | {gu} | {m.get('bytes', 0) / 1e6:,.0f} |")
        for k, e in res["errors"].items():
            lines.append(f"| {k.split('/')[0]} | {k.split('/')[1]} | error: {e[:200]} | | | | | | | |")
        for k, why in res["skipped"].items():
            lines.append(f"| {k} | - | skipped: {why} | | | | | | | |")
        ext = {k: m for k, m in med.items() if "timings" in m}
        if ext:
            lines += ["", "interp's seconds by phase (`ExtractSummary.timings`) in the median run; batch, writer "
                      "threads, shards:", "", "| variant | fs | batch | writer threads | shards | " +
                      " | ".join(PHASES) + " |", "|---|---|---|---|---|" + "---|" * len(PHASES)]
            for key, m in ext.items():
                v, fs = key.split("/")
                lines.append(f"| {v} | {fs} | {m['batch']} | {m['writer_threads']} | {m['shards']} | "
                             + " | ".join(f"{m['timings'].get(p, 0.0):.2f}" for p in PHASES) + " |")
        lines += ["", "Targets (tmpfs medians):", ""]
        tp = {k: m["tokens_per_s"] for k, m in med.items()}

        def ratio(x, y, tp=tp):
            return tp[x] / tp[y] if x in tp and y in tp else None

        for label, x, y, goal in (("b_one >= 0.9x a_body", "b_one/shm", "a_body/shm", 0.9),
                                  ("b_one >= 0.9x a_full", "b_one/shm", "a_full/shm", 0.9),
                                  ("b_all >= 0.8x a_body (same tokens)", "b_all/shm", "a_body_all/shm", 0.8),
                                  ("b_all_tuned >= 0.8x a_body (same tokens)", "b_all_tuned/shm", "a_body_all/shm",
                                   0.8),
                                  ("b_one >= 2x d_saelens", "b_one/shm", "d_saelens/shm", 2.0),
                                  ("b_one >= c_hand", "b_one/shm", "c_hand/shm", 1.0),
                                  ("b_one >= e_nnsight", "b_one/shm", "e_nnsight/shm", 1.0),
                                  ("b_sparse vs SAE encoded on the device (c_sparse_gpu)", "b_sparse/shm",
                                   "c_sparse_gpu/shm", 1.0),
                                  ("b_one >= 2x d_saelens (disk)", "b_one/disk", "d_saelens/disk", 2.0),
                                  ("b_one >= c_hand (disk)", "b_one/disk", "c_hand/disk", 1.0)):
            q = ratio(x, y)
            if q is not None:
                lines.append(f"- {label}: {q:.2f}x -> {'met' if q >= goal else 'NOT met'}")
        lines += ["", "Checks: " + (", ".join(f"{k}: {v}" for k, v in res["checks"].items()) or "none ran")]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", default=["pythia-1.4b", "llama-8b"], choices=list(MODELS))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--variants", nargs="+", default=list(ALL_VARIANTS))
    ap.add_argument("--disk-variants", nargs="+", default=["b_one", "b_all_tuned", "c_hand", "d_saelens"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--disk-repeats", type=int, default=1)
    ap.add_argument("--sparse-repeats", type=int, default=1, help="b_sparse and c_sparse_gpu repeats")
    ap.add_argument("--ctx", type=int, default=0, help="override the model's default")
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--tokens", type=int, default=0)
    ap.add_argument("--tokens-all", type=int, default=0)
    ap.add_argument("--batch-all", type=int, default=0, help="b_all_tuned's batch")
    ap.add_argument("--tokens-sparse", type=int, default=0)
    ap.add_argument("--tokens-saelens", type=int, default=0, help="d_saelens's tokens (default: a quarter)")
    ap.add_argument("--saelens-repeats", type=int, default=2)
    ap.add_argument("--shard-mb", type=float, default=64.0)
    ap.add_argument("--writer-threads", type=int, default=0, help="b_one/b_all/b_sparse (0: interp's default)")
    ap.add_argument("--tuned-writer-threads", type=int, default=0, help="b_all_tuned (0: cores - 4)")
    ap.add_argument("--saelens-dtype", default="float32", help="CacheActivationsRunner's dtype (its default)")
    ap.add_argument("--shm-dir", default="/dev/shm")
    ap.add_argument("--disk-dir", default="/var/tmp")
    ap.add_argument("--budget-s", type=float, default=1e9, help="stop starting runs after this many seconds")
    ap.add_argument("--out", default=None, help="markdown report (a .json beside it)")
    a = ap.parse_args()
    a.tuned_writer_threads = a.tuned_writer_threads or max(1, (os.cpu_count() or 4) - 4)
    t_start = time.perf_counter()
    notes = [n for n in (_stub_wandb(),) if n]
    log_lines: list[str] = []

    def log(s):
        s = f"[{time.perf_counter() - t_start:6.1f}s] {s}"
        print(s, flush=True)
        log_lines.append(s)

    import torch

    if not a.device.startswith("cuda"):
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    info = machine(a)
    log(f"machine: {info}")
    results = []
    for i, name in enumerate(a.model):
        left = a.budget_s - (time.perf_counter() - t_start)
        deadline = time.perf_counter() + left / (len(a.model) - i)  # an equal share of what is left per model
        try:
            results.append(bench_model(a, name, t_start, log, deadline))
        except Exception as e:  # noqa: BLE001 - a model that does not fit: report and go on
            import traceback

            log(f"MODEL {name} FAILED: {traceback.format_exc()[-2000:]}")
            notes.append(f"{name} failed: {type(e).__name__}: {str(e)[:300]}")
        if a.out:
            _write(a, info, results, notes, log_lines)
    text = report(a, info, results, notes)
    print(text)
    if a.out:
        _write(a, info, results, notes, log_lines)


def _write(a, info, results, notes, log_lines):
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(report(a, info, results, notes))
    Path(a.out).with_suffix(".json").write_text(json.dumps({"machine": info, "results": results, "notes": notes,
                                                            "log": log_lines}, indent=1, default=str))


if __name__ == "__main__":
    main()
