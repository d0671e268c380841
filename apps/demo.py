"""`make demo` / `interp demo`: extract activations from the embedded model, run every analysis, write the report.

The extraction caches the hooks the dark-matter study needs and that study reads them from the cache (model ->
capture -> cache -> analysis -> result -> report); the other analyses capture their own inputs (checkpoint sweeps,
toy models).

One failing analysis does not stop the others: its error is printed and the report shows what did run.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from apps.registry import ANALYSES, analysis_module
from interp.errors import ConfigError

# Reduced sizes for `interp demo --quick` (what the test suite runs); the full demo uses each Config's defaults.
QUICK: dict[str, dict] = {
    "dark-matter": {"n_tokens": 8192, "pursuit_tokens": 256, "synthetic_tokens": 4096, "downstream_blocks": 8,
                    "trace_tokens": 60},
    "lib": {"n_samples": 2000, "n_eval_samples": 500, "n_edge_eval_samples": 200},
    "obsprop": {"n_pairs": 16, "n_repeats": 5, "n_gauss": 20_000, "n_scatter": 1000},
    "massive": {"steps": [0, 8, 64, 256, 512, 1000, 3000], "n_inputs": 4, "compare_alternatives": False},
    "hashcodes": {"widths": [5, 40, 100], "seeds": [0], "epoch_checkpoints": [0, 10, 100], "sample_sizes": [100, 1437],
                  "sample_widths": [40], "sample_seeds": [0], "lm_tokens": 1024},
}


def _extract(out: Path, quick: bool) -> Path:
    """model -> capture -> cache: the hooks the dark-matter study reads, whole sequences of the held-out text."""
    from analyses.dark_matter import Config as DarkMatterConfig
    from analyses.dark_matter.pipeline import cache_hooks
    from interp.extract import ExtractConfig, extract
    from interp.models import DEFAULT_MODEL, load

    model = load(DEFAULT_MODEL)
    dm = DarkMatterConfig(**(QUICK["dark-matter"] if quick else {}))
    cfg = ExtractConfig(out=str(out / "cache"), model=DEFAULT_MODEL, tokens=dm.n_tokens, ctx=dm.ctx, batch_size=16,
                        hooks=cache_hooks(dm, model.cfg.n_layers), data=dm.data, overwrite=True)
    summary = extract(cfg, model=model, progress=not quick)
    print(f"[extract] {summary.line()}")
    return Path(cfg.out)


def run_demo(out: Path, quick: bool = False, only: list[str] | None = None) -> int:
    """Run the whole toolkit on the embedded default into `out`; return 0 when every step succeeded."""
    names = [n.replace("_", "-") for n in (only or list(ANALYSES))]
    unknown = [n for n in names if n not in ANALYSES]
    if unknown:
        raise ConfigError(f"unknown analyses {unknown}", hint=f"choose from {', '.join(ANALYSES)}")
    out.mkdir(parents=True, exist_ok=True)
    failures = []
    t0 = time.perf_counter()
    cache = _extract(out, quick)
    reads_cache = {"dark-matter": {"cache": str(cache)}}  # the others capture what they need themselves
    result_dirs = []
    for name in names:
        start = time.perf_counter()
        try:
            module = analysis_module(name)
            config = module.Config(**(QUICK.get(name, {}) if quick else {}), **reads_cache.get(name, {}))
            result = module.run(config)
            result_dirs.append(result.save(out / name))
            head = ", ".join(f"{k}={v}" for k, v in result.summary_rows()[:4])
            print(f"[{name}] {time.perf_counter() - start:.0f} s: {head}")
        except Exception as e:  # noqa: BLE001 - keep going, report at the end
            failures.append(name)
            print(f"[{name}] FAILED: {type(e).__name__}: {e}")
            traceback.print_exc()
    from apps.report import build_report

    index = build_report(result_dirs, out / "report") if result_dirs else None
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; report: {index}")
    if failures:
        print(f"failed analyses: {', '.join(failures)}")
    return 1 if failures else 0
