"""The README's code: every Python block compiles (and, in the slow suite, runs in order as a notebook would);
every `interp ...` line of the shell blocks parses with the real command line (subcommand and options known)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text()) if lang == language]


def interp_lines() -> list[str]:
    """Each `interp ...` command of the bash blocks, continuation lines joined, comments dropped; lines that show
    only some options (`...`, a placeholder for the options above) are left out."""
    out = []
    for body in blocks("bash"):
        text = re.sub(r"\\\n\s*", " ", body)
        for line in text.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("interp ") and "..." not in line:
                out.append(line)
    return out


def test_readme_python_blocks_compile():
    found = blocks("python")
    assert found, "the README has Python blocks"
    for i, body in enumerate(found):
        compile(body, f"README.md python block {i}", "exec")


@pytest.mark.parametrize("line", interp_lines())
def test_readme_interp_commands_parse(line):
    """The subcommand exists and takes every option the README gives it (`interp analyze NAME`'s options too)."""
    from apps.cli import build_parser

    argv = shlex.split(line)[1:]
    argv = [a for a in argv if a != "--debug"]
    args, rest = build_parser().parse_known_args(argv)
    if args.cmd == "analyze" and args.name:
        import argparse

        from analyses import REGISTRY
        from apps.config_args import add_config_options

        parser = argparse.ArgumentParser()
        parser.add_argument("--out")
        parser.add_argument("--quiet", action="store_true")
        parser.add_argument("--set", action="append")
        add_config_options(parser, REGISTRY.get(args.name).config)
        rest = parser.parse_known_args([a for a in rest if a not in ("-h", "--help")])[1]
    if args.cmd in ("toy", "saes"):
        rest = []
    assert rest == [], f"unknown options in the README line {line!r}: {rest}"


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path, monkeypatch):
    """Every Python block, in order, in one namespace (as a notebook runs them), in an empty folder."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, body in enumerate(blocks("python")):
        if "sparse_cache/" in body and not Path("sparse_cache").exists():
            from apps.cli import main

            assert main(["extract", "--model", "toy-pythia-4l", "--hooks", "blocks.2.hook_resid_post", "--sparse",
                         "topk", "--sae", str(README.parent / "data/saes/toy-pythia-4l/L2_resid_topk_x4"),
                         "--data", "embedded", "--tokens", "65536", "--out", "sparse_cache/", "--quiet"]) == 0
        exec(compile(body.replace("data/saes/", str(README.parent / "data/saes") + "/"),
                     f"README.md python block {i}", "exec"), namespace)
