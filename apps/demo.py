"""`make demo` / `interp demo`: extract activations from the embedded model, run every analysis, write the report.

Which analyses run, and their reduced `--quick` sizes, come from `analyses.REGISTRY`. An analysis that declares
`cache_hooks` (dark matter) reads its activations from a cache the demo extracts first (model -> capture -> cache
-> analysis -> result -> report); the others capture their own inputs (checkpoint sweeps, toy models).

One failing analysis does not stop the others: its error is printed and the report shows what did run.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from analyses import REGISTRY
from interp.analysis import Analysis
from interp.errors import ConfigError


def _extract(out: Path, record: Analysis, quick: bool) -> Path:
    """model -> capture -> cache: the hooks `record` reads, whole sequences of its held-out text, into `out`."""
    from interp.extract import ExtractConfig, extract
    from interp.models import load

    cfg = record.make_config(quick)
    model = load(cfg.model, step=cfg.load_step)
    extract_cfg = ExtractConfig(out=str(out), model=cfg.model, tokens=cfg.n_tokens, ctx=cfg.ctx,
                                batch_size=16, hooks=record.cache_hooks(cfg, model.cfg.n_layers), data=cfg.data,
                                overwrite=True)
    summary = extract(extract_cfg, model=model, progress=not quick)
    print(f"[extract] {summary.line()}")
    return Path(extract_cfg.out)


def run_demo(out: Path, quick: bool = False, only: list[str] | None = None) -> int:
    """Run every registered analysis on the embedded default into `out`; return 0 when every step succeeded.

    quick: each analysis's reduced sizes (`Analysis.quick`), what the tests run.
    """
    names = only or REGISTRY.names()
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ConfigError(f"unknown analyses {unknown}", hint=f"choose from {', '.join(REGISTRY.names())}")
    out.mkdir(parents=True, exist_ok=True)
    failures = []
    t0 = time.perf_counter()
    result_dirs = []
    caches: list[Path] = []
    for name in names:
        start = time.perf_counter()
        try:
            record = REGISTRY.get(name)
            extra = {}
            if record.cache_hooks is not None:  # the analysis reads what the demo extracts for it
                caches.append(_extract(out / ("cache" if not caches else f"cache-{record.name}"), record, quick))
                extra["cache"] = str(caches[-1])
            config = record.make_config(quick, **extra)
            result = record.run(config)
            result_dirs.append(result.save(out / record.name))
            print(f"[{record.name}] {time.perf_counter() - start:.0f} s: {result.headline()}")
        except Exception as e:  # noqa: BLE001 - keep going, report at the end
            failures.append(name)
            print(f"[{name}] FAILED: {type(e).__name__}: {e}")
            traceback.print_exc()
    if only is None:  # the whole demo also builds a latent browser of one shipped SAE; the index links it
        start = time.perf_counter()
        try:
            from apps.browse_cmd import build_demo_browser

            site = build_demo_browser(out, quick=quick)
            print(f"[browser] {time.perf_counter() - start:.0f} s: {site}")
        except Exception as e:  # noqa: BLE001 - keep going, report at the end
            failures.append("browser")
            print(f"[browser] FAILED: {type(e).__name__}: {e}")
            traceback.print_exc()
    from apps.report import build_report

    index = build_report(result_dirs, out / "report") if result_dirs else None
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; report: {index}")
    if failures:
        print(f"failed analyses: {', '.join(failures)}")
    return 1 if failures else 0
