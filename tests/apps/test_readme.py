"""README code blocks: a `...` that stands for options the reader fills in is marked as a placeholder, so that a
command copied from the README is not run with a literal `...` argument."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def code_blocks(text: str) -> list[list[str]]:
    """The lines of every fenced (```) block of a Markdown text."""
    return [block.splitlines() for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)]


def unmarked_placeholders(blocks: list[list[str]]) -> list[str]:
    """Lines whose code (the part before a ` #` comment) has a bare `...` argument that neither the line's own
    comment ("... = ...") nor an earlier comment line of its block ("... stands for ...") explains."""
    bad = []
    for lines in blocks:
        explained = False
        for line in lines:
            code, _, comment = line.partition(" #") if not line.lstrip().startswith("#") else ("", "", line)
            if "..." in comment and ("stands for" in comment):
                explained = True
            if "..." in code.split() and not explained and "... =" not in comment:
                bad.append(line.strip())
    return bad


def test_checker_flags_a_bare_placeholder():
    assert unmarked_placeholders([["interp extract ... --resume   # continues"]]) == ["interp extract ... --resume   "
                                                                                  "# continues"]
    assert unmarked_placeholders([["interp extract ... --resume   # ... = the options above"]]) == []
    assert unmarked_placeholders([["# ... stands for the options", "torchrun x ...", "  --y ..."]]) == []
    assert unmarked_placeholders([["print('...')", "x = [1, 2]  # a list, ..."]]) == []


def test_readme_placeholders_are_marked():
    blocks = code_blocks(README.read_text())
    assert len(blocks) >= 3
    bad = unmarked_placeholders(blocks)
    assert not bad, "mark these `...` as placeholders (e.g. `# ... = the options above`):\n" + "\n".join(bad)
