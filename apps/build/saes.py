"""Build the shipped SAEs: extract activations into an interp cache, train sae-lens SAEs from it, write index.json.

    python -m apps.build.saes                       # toy-pythia-4l, middle layer -> data/saes/...
    python -m apps.build.saes --tokens 200000 --out /tmp/saes

Sweep on `blocks.L.hook_resid_post`: TopK at 4×, 8×, 16×, 32× d_model and JumpReLU (quadratic L0 penalty around the
same target L0) at 2×, 4×, 8×, 16× (32× JumpReLU does not fit the 8 MB budget); plus one 4× TopK SAE each for the
previous residual stream, the MLP output and the attention heads (`attn.hook_z`, flattened) of layer L. Weights are
stored in float16.
Training text is the embedded suite's (regenerated) training split, never the held-out corpus the analysis reads.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from analyses.dark_matter.data import COMPONENTS, component_hooks, middle_layer
from interp.fileio import atomic_write_bytes


@dataclass
class BuildConfig:
    """What to train; the defaults make the shipped set (data/README.md: ≈ 6.7 MB of float16 weights for
    d_model = 128, about 23 minutes on one CPU core)."""

    model: str = "toy-pythia-4l"
    checkpoint: int | None = None
    out: str = ""                              # "" = data/saes/<model>
    cache: str = ""                            # reuse this interp cache (may be incomplete); "" = extract to tmp
    layer: int = -1
    topk_expansions: list[int] = field(default_factory=lambda: [4, 8, 16, 32])
    jumprelu_expansions: list[int] = field(default_factory=lambda: [2, 4, 8, 16])
    component_expansion: int = 4
    components: list[str] = field(default_factory=lambda: ["prev_resid", "mlp_out", "attn_z"])
    k: int = 16                                # TopK k = JumpReLU target L0
    tokens: int = 600_000                      # tokens extracted for training (per hook)
    training_tokens: int = 2_000_000           # samples seen per SAE (3.3 epochs of the cache)
    component_training_tokens: int = 1_000_000
    batch_size: int = 1024
    lr: float = 2e-3
    jumprelu_l0_coefficient: float = 0.5
    jumprelu_init_threshold: float = 0.3
    positions: str = "drop:1"
    ctx: int = 128
    seed: int = 0
    storage_dtype: str = "float16"


def _train_texts(n_tokens: int) -> list[str]:
    from interp.toy.corpus import train_texts

    return train_texts(n_docs=max(200, n_tokens // 40))  # ~68 tokens per document; extra is harmless


def build(cfg: BuildConfig, model: torch.nn.Module | None = None, texts: list[str] | None = None) -> Path:
    """Extract, train every SAE, save them (float16) with an index.json; return the output folder."""
    from interp.extract import ExtractConfig, extract
    from interp.models import data_dir, load
    from interp.sae_training import train_sae
    from interp.saes import reconstruct, save_sae

    model = model if model is not None else load(cfg.model, step=cfg.checkpoint)
    layer = cfg.layer if cfg.layer >= 0 else middle_layer(model)
    hooks = component_hooks(layer)
    out = Path(cfg.out) if cfg.out else Path(data_dir()) / "saes" / Path(cfg.model).name
    out.mkdir(parents=True, exist_ok=True)
    plan = [("resid", "topk", e) for e in cfg.topk_expansions] + \
           [("resid", "jumprelu", e) for e in cfg.jumprelu_expansions] + \
           [(c, "topk", cfg.component_expansion) for c in cfg.components if cfg.component_expansion > 0]
    entries = []
    with tempfile.TemporaryDirectory(prefix="dm_cache_") as tmp:
        cache = Path(cfg.cache) if cfg.cache else Path(tmp) / "cache"
        t0 = time.time()
        needed = sorted({hooks[c] for c, _, _ in plan})
        if not cfg.cache:
            extract(ExtractConfig(out=str(cache), model=cfg.model, checkpoint=cfg.checkpoint,
                                  hooks=needed, data=texts or _train_texts(cfg.tokens),
                                  tokens=cfg.tokens, ctx=cfg.ctx, positions=cfg.positions), model=model, progress=False)
        print(f"extracted {cfg.tokens} tokens x {len(needed)} hooks in {time.time() - t0:.0f}s", flush=True)
        from interp.cache import open_cache

        reader = open_cache(cache, allow_incomplete=bool(cfg.cache))
        for comp, arch, exp in plan:
            hook = hooks[comp]
            name = f"L{layer}_{comp}_{arch}_x{exp}"
            d = math.prod(reader.manifest.hooks[hook]["shape"])  # flattened row width (heads × d_head for hook_z)
            t1 = time.time()
            n_train = cfg.training_tokens if comp == "resid" else cfg.component_training_tokens
            extra = {"l0_coefficient": cfg.jumprelu_l0_coefficient,
                     "jumprelu_init_threshold": cfg.jumprelu_init_threshold} if arch == "jumprelu" else {}
            sae = train_sae(str(cache), hook=hook, d_sae=d * exp, architecture=arch, k=cfg.k, target_l0=cfg.k,
                            training_tokens=n_train, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                            allow_incomplete=bool(cfg.cache), **extra)
            x = reader.read(hook, 0, min(reader.n_rows, 32_768)).float().reshape(-1, d)
            save_sae(sae, out / name, storage_dtype=cfg.storage_dtype,
                     metadata={"hook_name": hook, "model_name": cfg.model})
            from interp.saes import load_sae

            stored = load_sae(out / name)  # score the stored (float16-rounded) weights, as the analysis sees them
            rec, l0 = reconstruct(stored, x)
            fvu = float(((x - rec) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
            entry = {"name": name, "path": name, "hook": hook, "component": comp, "architecture": arch,
                     "d_in": d, "d_sae": d * exp, "expansion": exp, "k_or_target_l0": cfg.k,
                     "l0_train": float(l0.mean()), "fvu_train": fvu, "training_tokens": n_train,
                     "train": {"lr": cfg.lr, "batch_size": cfg.batch_size, "seed": cfg.seed, **extra},
                     "bytes": sum(f.stat().st_size for f in (out / name).iterdir())}
            atomic_write_bytes(out / name / "entry.json", json.dumps(entry, indent=2).encode())
            entries.append(entry)
            write_index(out, cfg.model, cfg.checkpoint, layer, hooks)
            print(f"{name}: fvu={fvu:.4f} l0={float(l0.mean()):.1f} ({time.time() - t1:.0f}s)", flush=True)
    for junk in out.glob("*/runner_cfg.json"):
        junk.unlink()
    return out


def write_index(out: Path, model: str, checkpoint: int | None, layer: int, hooks: dict[str, str]) -> dict:
    """Assemble index.json from every `<sae>/entry.json` under `out` (safe with several builders at once)."""
    entries = [json.loads(p.read_text()) for p in sorted(out.glob("*/entry.json"))]
    order = {c: i for i, c in enumerate(COMPONENTS)}
    entries.sort(key=lambda e: (order.get(e["component"], 9), e["architecture"], e["d_sae"]))
    index = {"model": model, "checkpoint": checkpoint, "layer": layer, "hooks": hooks, "saes": entries,
             "total_bytes": sum(e["bytes"] for e in entries),
             "note": "trained by apps/build/saes.py from an interp cache of the regenerated toy "
                     "training split; weights stored float16, loaded as float32"}
    atomic_write_bytes(out / "index.json", json.dumps(index, indent=2).encode())
    return index


def main(argv: list[str] | None = None) -> None:
    """CLI: python -m apps.build.saes [--model M] [--out DIR] [--tokens N] ..."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = BuildConfig()
    for key in ("model", "out", "cache", "layer", "tokens", "training_tokens", "component_training_tokens",
                "batch_size", "lr", "k", "jumprelu_l0_coefficient", "jumprelu_init_threshold", "seed"):
        p.add_argument(f"--{key.replace('_', '-')}", type=type(getattr(defaults, key)), default=getattr(defaults, key))
    p.add_argument("--checkpoint", type=int, default=None)
    p.add_argument("--component-expansion", type=int, default=defaults.component_expansion)
    p.add_argument("--components", nargs="*", default=defaults.components, choices=COMPONENTS[1:])
    p.add_argument("--topk", type=int, nargs="*", default=defaults.topk_expansions)
    p.add_argument("--jumprelu", type=int, nargs="*", default=defaults.jumprelu_expansions)
    a = p.parse_args(argv)
    cfg = BuildConfig(**{k: v for k, v in vars(a).items() if k not in ("topk", "jumprelu")},
                      topk_expansions=a.topk, jumprelu_expansions=a.jumprelu)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = build(cfg)
    print(f"wrote {out} ({sum(f.stat().st_size for f in out.rglob('*') if f.is_file()) / 1e6:.2f} MB)")
    shutil.rmtree(out / "__pycache__", ignore_errors=True)


if __name__ == "__main__":
    main()
