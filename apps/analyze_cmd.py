"""`interp analyze NAME [options]`: one analysis of `analyses.REGISTRY`, its Config fields as options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interp.errors import ConfigError


def _check_result_folder(out: Path, analysis: str) -> None:
    """Refuse an --out that is a file, or a folder holding another analysis's result (it would be replaced)."""
    import json

    from interp.analysis import normalize

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder", hint="pass a folder for the result")
    try:
        other = json.loads((out / "result.json").read_text()).get("analysis")
    except (OSError, ValueError, AttributeError):
        return  # no (readable) result there: nothing of another analysis to lose
    if other is not None and normalize(str(other)) != normalize(analysis):
        raise ConfigError(f"{out} holds a {other} result; saving the {analysis} result there would replace it",
                          hint=f"choose another --out (e.g. results/{analysis}), or delete {out} first")


def cmd_analyze(a: argparse.Namespace, rest: list[str]) -> int:
    from analyses import REGISTRY
    from apps.config_args import add_config_options, config_from_args
    from interp import progress

    if a.name is None:  # `interp analyze --help`, or no name: list what there is
        asked = bool({"-h", "--help"} & set(rest))
        lines = [f"  {r.name:<12} {r.title}" for r in REGISTRY.all()]
        print("usage: interp analyze NAME [--out DIR] [--quiet] [options]  (options: interp analyze NAME --help)\n"
              "analyses:\n" + "\n".join(lines), file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    record = REGISTRY.get(a.name)
    module_doc = (sys.modules[record.config.__module__.rsplit(".", 1)[0]].__doc__ or "").strip()
    p = argparse.ArgumentParser(prog=f"interp analyze {record.name}", description=module_doc or record.title,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help=f"result folder (default: results/{record.name})")
    p.add_argument("--quiet", action="store_true", help="no stage lines or progress bars")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set a Config field (lists: comma-separated or JSON)")
    add_config_options(p, record.config)
    opts = p.parse_args(rest)
    config = config_from_args(record.config, opts, opts.set)
    out = Path(opts.out or Path("results") / record.name)
    _check_result_folder(out, record.name)  # before the run: a refusal after minutes of work would waste them
    config.validate()  # every config check, also before the run
    with progress.quiet(opts.quiet or progress.is_quiet()):
        result = record.run(config)
    result.save(out)
    print(f"{result.title}")
    for finding in result.findings:
        print(f"  {finding.sentence()}")
    if not result.findings:
        print("  " + ", ".join(f"{k}={v}" for k, v in result.summary_rows()[:6]))
    print(f"wrote {out / 'result.json'} (report: interp report {out} --out report/)")
    return 0


