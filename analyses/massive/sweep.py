"""Run any per-checkpoint metric over a model's training checkpoints, one cached JSON per checkpoint (resumable).

`checkpoint_sweep("toy-pythia-4l", metric)` loads each checkpoint with `interp.models.load(name, step=s)` (embedded
suites offline; Pythia names through transformer-lens `checkpoint_value`, which needs a reachable hub and
otherwise fails with a one-line HubUnavailableError), calls `metric(model, step) -> dict` (JSON-able) and, with a
cache folder, writes `<cache_dir>/step<N>.json` atomically. A rerun with the same `key` reuses finished
checkpoints, so an interrupted sweep resumes where it stopped; a different key recomputes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from interp.errors import ConfigError
from interp.fileio import atomic_write_bytes
from interp.results import to_jsonable

Metric = Callable[[torch.nn.Module, int], dict]


def _cache_file(cache_dir: Path, step: int) -> Path:
    return cache_dir / f"step{int(step)}.json"


def load_cached(cache_dir: str | Path, step: int, key: str) -> dict | None:
    """The cached metric of `step` if its file exists, parses and was made with `key`; else None."""
    path = _cache_file(Path(cache_dir), step)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a torn or foreign file: recompute
    return doc.get("result") if doc.get("key") == key and doc.get("step") == int(step) else None


def checkpoint_sweep(model: str, metric: Metric, steps: Sequence[int] | None = None, *,
                     cache_dir: str | Path | None = None, key: str = "", device: str = "cpu",
                     loader: Callable[[str, int], torch.nn.Module] | None = None,
                     log: Callable[[str], None] | None = None) -> dict[int, dict]:
    """{step: metric(model@step, step)} over `steps` (default: every checkpoint), cached per step when asked.

    loader(model, step) overrides `interp.models.load` (tests pass random-weight models this way).
    """
    from interp import models

    if steps is None:
        steps = models.checkpoints(model)
    steps = [int(s) for s in steps]
    if not steps:
        raise ConfigError(f"no checkpoints to sweep for {model}", hint="pass checkpoints=[...]")
    if loader is None:
        known = set(models.checkpoints(model))
        missing = [s for s in steps if s not in known]
        if missing:
            raise ConfigError(f"{model} has no checkpoint at steps {missing[:5]}",
                              hint=f"available: {sorted(known)[:6]}…{sorted(known)[-3:]}")
        loader = lambda name, s: models.load(name, step=s, device=device)  # noqa: E731
    cdir = Path(cache_dir) if cache_dir is not None else None
    out: dict[int, dict] = {}
    from interp import progress

    for s in progress.bar(steps, f"{Path(str(model)).name} checkpoints", unit="ckpt"):
        if cdir is not None:
            hit = load_cached(cdir, s, key)
            if hit is not None:
                out[s] = hit
                if log:
                    log(f"{model} step {s}: cached")
                continue
        m = loader(model, s)
        res = to_jsonable(metric(m, s))
        del m
        out[s] = res
        if cdir is not None:
            doc = {"model": str(model), "step": s, "key": key, "result": res}
            atomic_write_bytes(_cache_file(cdir, s), json.dumps(doc).encode())
        if log:
            log(f"{model} step {s}: done")
    return out
