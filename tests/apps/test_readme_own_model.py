"""The README's "Your own model" section runs as written: its Python blocks in order, in one namespace, in an empty
folder (they build their own tiny model offline), with the shapes their comments promise; its `interp` lines parse
with the real command line."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def _section() -> list[tuple[str, str]]:
    text = README.read_text()
    start = text.index("## Your own model")
    end = text.index("\n## ", start + 1)
    return FENCE.findall(text[start:end])


def test_python_blocks_run_and_shapes_match_their_comments(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    checked = 0
    for i, (lang, body) in enumerate(_section()):
        if lang != "python":
            continue
        exec(compile(body, f"README.md own-model block {i}", "exec"), namespace)
        last = body.strip().splitlines()[-1]
        expr, _, comment = last.partition("#")
        shape = re.match(r"\s*\[([^\]]+)\]", comment)
        if expr.strip().endswith(".shape") and shape:
            got = tuple(eval(expr, namespace))
            want = [w.strip() for w in shape.group(1).split(",")]
            assert len(got) == len(want)
            assert all(not w.isdigit() or int(w) == g for w, g in zip(want, got)), (got, want)
            checked += 1
    assert checked == 2


def test_padded_rows_are_the_real_tokens(tmp_path, monkeypatch):
    """The first block's comment says no padded rows: its row count is the number of real tokens."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    body = next(b for lang, b in _section() if lang == "python")
    exec(compile(body, "README.md own-model block 0", "exec"), namespace)
    assert namespace["acts"]["blocks.1.hook_resid_post"].shape[0] == int(namespace["batch"]["attention_mask"].sum())
    assert not bool(namespace["batch"]["attention_mask"].all())


# The section's `interp` lines are parsed with the rest of the README's (test_readme_blocks.py).
