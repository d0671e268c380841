"""`interp saes train | eval | import`: train SAEs on a cache of a hook (any model), score SAEs (and transcoders,
on the output hook they replace) with the standard evals, and import SAEs that other libraries wrote.

    interp saes train --cache cache/ --hook blocks.2.hook_resid_post --widths 4 8 16 --out my_saes/
    interp saes eval --model toy-pythia-4l --saes my_saes/ --out results/sae-evals
    interp saes import sparsify_run/ --out my_saes/        # sparsify, Gemma Scope params.npz, dictionary_learning

`train` writes one sae-lens folder per width and an index.json that the dark-matter analysis and `saes eval` read
(`interp analyze dark-matter --model M --saes my_saes/`). `eval` is `interp analyze sae-evals` under another name.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from interp.errors import ConfigError

USAGE = ("interp saes train --cache DIR --hook HOOK --widths N [N ...] --out DIR | interp saes eval [options] | "
         "interp saes import SRC [SRC ...] --out DIR [--hook HOOK]")


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interp saes train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", required=True, help="interp cache holding the hook (interp extract --hooks HOOK)")
    p.add_argument("--hook", required=True, help="the hook to train on (rows of per-head hooks are flattened)")
    p.add_argument("--widths", type=int, nargs="+", required=True, help="expansion factors: d_sae = width × d_in")
    p.add_argument("--architecture", choices=["topk", "jumprelu", "standard"], default="topk",
                   help="sae-lens architecture (default topk)")
    p.add_argument("--k", type=int, default=16, help="TopK k, and the JumpReLU target L0 (default 16)")
    p.add_argument("--training-tokens", type=int, default=500_000, help="rows seen per SAE (default 500,000)")
    p.add_argument("--batch-size", type=int, default=1024, help="rows per step (default 1024)")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate (default 0.002)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the row order")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--out", required=True, help="folder for the SAEs and their index.json")
    return p


def train_saes(a: argparse.Namespace) -> Path:
    """Train one SAE per width on the cache's rows of `a.hook`; save them and an index.json; return the folder."""
    from apps.build.saes import write_index
    from interp.cache import open_cache
    from interp.capture import layer_of
    from interp.fileio import atomic_write_bytes
    from interp.sae_training import train_sae
    from interp.saes import load_sae, reconstruct, save_sae

    reader = open_cache(a.cache)  # refuses a missing or damaged cache before any training
    if a.hook not in reader.hooks:
        raise ConfigError(f"cache {a.cache} has no hook {a.hook}", hint=f"it holds {', '.join(reader.hooks)}")
    if any(w < 1 for w in a.widths) or a.k < 1 or a.training_tokens < a.batch_size:
        raise ConfigError("widths and k must be >= 1 and training-tokens >= batch-size",
                          hint="e.g. --widths 4 8 --k 16 --training-tokens 500000")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ident = reader.manifest.identity
    model = str(ident.get("model", ""))
    layer = layer_of(a.hook)
    d = math.prod(reader.manifest.hooks[a.hook]["shape"])
    x = reader.read(a.hook, 0, min(reader.n_rows, 32_768)).float().reshape(-1, d)
    component = _component(a.hook, layer)
    for width in a.widths:
        name = f"{a.hook.replace('.', '_')}_{a.architecture}_x{width}"
        print(f"training {name} (d_sae {d * width}) on {a.training_tokens:,} rows", file=sys.stderr, flush=True)
        sae = train_sae(a.cache, hook=a.hook, d_sae=d * width, architecture=a.architecture, k=a.k, target_l0=a.k,
                        training_tokens=a.training_tokens, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                        device=a.device)
        save_sae(sae, out / name, metadata={"hook_name": a.hook, "model_name": model})
        rec, l0 = reconstruct(load_sae(out / name), x)
        fvu = float(((x - rec) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
        entry = {"name": name, "path": name, "hook": a.hook, "component": component, "architecture": a.architecture,
                 "d_in": d, "d_sae": d * width, "expansion": width, "k_or_target_l0": a.k, "l0_train": float(l0.mean()),
                 "fvu_train": fvu, "training_tokens": a.training_tokens,
                 "train": {"lr": a.lr, "batch_size": a.batch_size, "seed": a.seed, "cache": str(a.cache)},
                 "bytes": sum(f.stat().st_size for f in (out / name).iterdir())}
        atomic_write_bytes(out / name / "entry.json", json.dumps(entry, indent=2).encode())
        print(f"  {name}: FVU {fvu:.4f}, L0 {float(l0.mean()):.1f}", flush=True)
    from analyses.dark_matter.data import component_hooks

    write_index(out, model, ident.get("checkpoint"), layer if layer is not None else -1,
                component_hooks(layer) if layer is not None else {component: a.hook})
    for junk in out.glob("*/runner_cfg.json"):
        junk.unlink()
    return out


def import_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interp saes import", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", help="SAE folders of sparsify (cfg.json + sae.safetensors; or a folder of "
                   "one per hookpoint), Gemma Scope (params.npz) or dictionary_learning (config.json + "
                   "ae.safetensors)")
    p.add_argument("--hook", default=None, help="the hook the SAEs were trained on, where a folder does not say "
                   "(sparsify layers.N, Gemma Scope layer_N of a -res release and dictionary_learning "
                   "resid_post_layer_N are read as blocks.N.hook_resid_post)")
    p.add_argument("--model", default="", help="the model the SAEs belong to, recorded in the index (optional)")
    p.add_argument("--storage-dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="dtype the weights are stored in (default float32: exactly the source's float32 values)")
    p.add_argument("--out", required=True, help="folder for the converted sae-lens SAEs and their index.json "
                   "(SAEs already there stay and are listed in the index too)")
    p.add_argument("--overwrite", action="store_true", help="replace SAE folders of the same name under --out")
    return p


def import_saes(a: argparse.Namespace) -> Path:
    """Convert every SAE of `a.sources` into a sae-lens folder under `a.out`, with entry.json and index.json."""
    from apps.build.saes import write_index
    from interp.capture import layer_of
    from interp.fileio import atomic_write_bytes
    from interp.sae_formats import foreign_entries, read_foreign, to_sae_lens
    from interp.saes import save_sae

    found = []
    for src in a.sources:  # every source is read and checked before anything is written
        rows = foreign_entries(src, a.hook)
        if not rows:
            raise ConfigError(f"{src} holds no SAE of sparsify, Gemma Scope or dictionary_learning",
                              hint="sae-lens folders need no import: pass them to --saes / --sae directly")
        found += [(Path(r["abs_path"]), read_foreign(r["abs_path"], a.hook)) for r in rows]
    out = Path(a.out)
    names = [path.stem if path.suffix == ".npz" else path.name for path, _ in found]
    clash = sorted({n for n in names if names.count(n) > 1} | {n for n in names if (out / n).exists()})
    if clash and not a.overwrite:
        raise ConfigError(f"{out} would get {', '.join(clash)} twice, or already holds them",
                          hint="import into another --out, or pass --overwrite to replace existing SAE folders")
    out.mkdir(parents=True, exist_ok=True)
    for name, (path, foreign) in zip(names, found):
        save_sae(to_sae_lens(foreign), out / name, storage_dtype=a.storage_dtype,
                 metadata={"hook_name": foreign.hook, "model_name": a.model,
                           **({"hook_name_out": foreign.hook_out} if foreign.is_transcoder else {})})
        layer = layer_of(foreign.hook)
        entry = {"name": name, "path": name, "hook": foreign.hook, "component": _component(foreign.hook, layer),
                 **({"hook_out": foreign.hook_out} if foreign.is_transcoder else {}),
                 "architecture": foreign.architecture, "d_in": foreign.d_in, "d_sae": foreign.d_sae,
                 "expansion": foreign.d_sae / foreign.d_in, "k_or_target_l0": foreign.k,
                 "source": {"format": foreign.source_format, "path": str(path.resolve()), "notes": foreign.notes},
                 "bytes": sum(f.stat().st_size for f in (out / name).iterdir())}
        atomic_write_bytes(out / name / "entry.json", json.dumps(entry, indent=2).encode())
        print(f"  {name}: {foreign.source_format} {foreign.architecture} SAE, d_sae {foreign.d_sae}, hook "
              f"{foreign.hook}", flush=True)
    first = layer_of(found[0][1].hook)
    write_index(out, a.model, None, first if first is not None else -1, {h.hook: h.hook for _, h in found})
    return out


def _component(hook: str, layer: int | None) -> str:
    """The dark-matter component name of a hook ("resid" for blocks.L.hook_resid_post), else the hook itself."""
    if layer is None:
        return hook
    from analyses.dark_matter.data import component_hooks

    return next((c for c, h in component_hooks(layer).items() if h == hook), hook)


def saes_main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "train":
        out = train_saes(train_parser().parse_args(rest))
        print(f"wrote {out / 'index.json'}")
        return 0
    if cmd == "import":
        out = import_saes(import_parser().parse_args(rest))
        print(f"wrote {out / 'index.json'}")
        return 0
    if cmd == "eval":
        from apps.analyze_cmd import cmd_analyze

        return cmd_analyze(argparse.Namespace(name="sae-evals"), rest)
    raise ConfigError(f"unknown saes command '{cmd}'", hint=USAGE)
