"""The `interp` command line: extract | tokenize | cache info/verify | models | analyze NAME | report | demo | toy.

Every user error is one line on stderr and exit code 2 (a traceback only with --debug).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from apps import browse_cmd, extract_cmd, tokenize_cmd
from interp.errors import InterpError

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")  # no model hub here; hub names fail with a clear error instead of hanging
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def cmd_cache(a: argparse.Namespace) -> int:
    from apps.cache_cmds import cache_info, cache_verify

    return cache_info(a.dir) if a.cache_cmd == "info" else cache_verify(a.dir, repair=a.repair)


def cmd_models(a: argparse.Namespace) -> int:
    from interp.models import DEFAULT_MODEL, checkpoints, embedded_names, suite_info

    for name in embedded_names():
        steps = checkpoints(name)
        loss = suite_info(name).get("heldout_loss", {})
        final = loss.get(str(steps[-1])) if steps else None
        mark = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{mark}: {len(steps)} checkpoints, steps {steps[0]}..{steps[-1]}"
              + (f", held-out loss {final:.3f}" if isinstance(final, (int, float)) else ""))
    if not embedded_names():
        print("no embedded suites in data/models (train them: interp toy train)")
    return 0


def cmd_analyze(a: argparse.Namespace, rest: list[str]) -> int:
    from apps.analyze_cmd import cmd_analyze as run

    return run(a, rest)


def cmd_report(a: argparse.Namespace) -> int:
    from apps.report.builder import build_report_pages

    index, pages = build_report_pages([Path(p) for p in a.results], Path(a.out))
    print(f"wrote {index}")
    broken = [p for p in pages if p.errors]
    for p in broken:  # the pages show them too; a script or CI must see them in the exit code
        print(f"interp: problem in {p.source}: {p.errors[0].splitlines()[0]}", file=sys.stderr)
    return 1 if broken else 0


def cmd_demo(a: argparse.Namespace) -> int:
    from apps.demo import run_demo

    return run_demo(Path(a.out), quick=a.quick, only=a.only)


def cmd_saes(a: argparse.Namespace, rest: list[str]) -> int:
    from apps.saes_cmd import saes_main

    return saes_main(rest)


def cmd_toy(a: argparse.Namespace, rest: list[str]) -> int:
    from apps.toy_cmds import toy_main

    return toy_main(rest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interp", description="Capture activations, analyse them, read the reports.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="cmd", required=True)
    extract_cmd.add_parser(sub)
    c = sub.add_parser("cache", help="inspect or check a cache folder")
    csub = c.add_subparsers(dest="cache_cmd", required=True)
    ci = csub.add_parser("info", help="summary of a cache's manifest")
    ci.add_argument("dir")
    cv = csub.add_parser("verify", help="check every shard file's size and checksum (xxh3_128, or sha256 in "
                         "older caches); exit 1 on any problem")
    cv.add_argument("dir")
    cv.add_argument("--repair", action="store_true", help="unlist bad shards so that extract --resume redoes them "
                    "(exit 0 once the rest is sound)")
    tokenize_cmd.add_parser(sub)
    sub.add_parser("models", help="list the embedded model suites")
    an = sub.add_parser("analyze", help="run one analysis (options: interp analyze NAME --help)", add_help=False)
    an.add_argument("name", nargs="?", help="the analysis (interp analyze --help lists them)")
    r = sub.add_parser("report", help="build the HTML report from result folders")
    r.add_argument("results", nargs="+", help="result folders (or one folder holding them)")
    r.add_argument("--out", required=True)
    browse_cmd.add_parser(sub)
    d = sub.add_parser("demo", help="extract, run every analysis and write the report")
    d.add_argument("--out", default="demo_out")
    d.add_argument("--quick", action="store_true", help="small sizes (what the tests run)")
    d.add_argument("--only", nargs="+", default=None, help="run only these analyses")
    sub.add_parser("toy", help="generate the embedded corpus and train the model suite", add_help=False)
    sub.add_parser("saes", help="train SAEs on a cache (saes train), score SAEs (saes eval), import other "
                   "libraries' SAEs (saes import)", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    debug = "--debug" in argv
    argv = [x for x in argv if x != "--debug"]  # accepted anywhere: `interp analyze lib --debug` too
    try:
        args, rest = parser.parse_known_args(argv)
        if args.cmd == "analyze":
            return cmd_analyze(args, rest)
        if args.cmd == "toy":
            return cmd_toy(args, rest)
        if args.cmd == "saes":
            return cmd_saes(args, rest)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        rc = {"extract": extract_cmd.cmd_extract, "cache": cmd_cache, "models": cmd_models, "report": cmd_report,
              "demo": cmd_demo, "tokenize": tokenize_cmd.cmd_tokenize,
              "browse": browse_cmd.cmd_browse}[args.cmd](args)
        sys.stdout.flush()  # here, so that a reader that left (`| head`) is seen below, not at exit
        return rc
    except InterpError as e:
        if debug:
            raise
        print(f"interp: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `interp cache info cache/ | head -1`: the reader left, nothing to report
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0
    except OSError as e:  # a file where a folder should be, no permission, disk full: one line, not a traceback
        if debug:
            raise
        where = f": {e.filename}" if e.filename else ""
        print(f"interp: error: {e.strerror or e}{where}", file=sys.stderr)
        print("  hint: check the path (--out must be a folder you can write) and the free space", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interp: interrupted (an extraction can continue with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
