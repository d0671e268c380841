"""The variants of benchmarks/extract_gpu.py (issue 23), one method each on `Bench`: the model shapes, the bare
forwards (a_*), interp extract (b_*), the hand loops (c_*), sae-lens' CacheActivationsRunner (d_saelens) and
nnsight (e_nnsight), and the checks that every interp cache equals a plain capture of the same batches.
"""

from __future__ import annotations

import os
import shutil
import statistics
import threading
import time
from pathlib import Path

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
