"""Hook globs: `*` is exactly one dotted component, `**` any number; checked against explicit lists and a
brute-force matcher that tries every split of the name's components among the pattern's."""

import fnmatch
import itertools

import pytest
import torch

from interp.capture import glob_match, hook_names, resolve_hooks

BERT_LIKE = [
    "encoder", "encoder.layer", "encoder.layer.0", "encoder.layer.0.attention", "encoder.layer.0.attention.output",
    "encoder.layer.0.attention.output.dense", "encoder.layer.0.output", "encoder.layer.0.output.dense",
    "encoder.layer.1", "encoder.layer.1.attention.output", "encoder.layer.1.output", "encoder.layer.11.output",
    "blocks.0.hook_resid_post", "blocks.10.hook_resid_post", "blocks.0.attn.hook_z", "hook_embed",
]


def brute_force(pattern: str, name: str) -> bool:
    """Assign the name's components to the pattern's in order: `**` takes any run (empty too), any other
    component exactly one component that fnmatch accepts. Tries every assignment."""
    pat, parts = pattern.split("."), name.split(".")
    stars = [i for i, p in enumerate(pat) if p == "**"]
    fixed = len(pat) - len(stars)
    spare = len(parts) - fixed
    if spare < 0 or (spare > 0 and not stars):
        return False
    for sizes in itertools.product(range(spare + 1), repeat=len(stars)):
        if sum(sizes) != spare:
            continue
        k, ok, take = 0, True, dict(zip(stars, sizes))
        for i, p in enumerate(pat):
            if p == "**":
                k += take[i]
                continue
            if not fnmatch.fnmatchcase(parts[k], p):
                ok = False
                break
            k += 1
        if ok:
            return True
    return False


@pytest.mark.parametrize("pattern, expected", [
    ("encoder.layer.*.output", ["encoder.layer.0.output", "encoder.layer.1.output", "encoder.layer.11.output"]),
    ("encoder.layer.*.attention.output", ["encoder.layer.0.attention.output", "encoder.layer.1.attention.output"]),
    ("**.output", ["encoder.layer.0.attention.output", "encoder.layer.0.output", "encoder.layer.1.attention.output",
                   "encoder.layer.1.output", "encoder.layer.11.output"]),
    ("encoder.**.dense", ["encoder.layer.0.attention.output.dense", "encoder.layer.0.output.dense"]),
    ("encoder.layer.**", [n for n in BERT_LIKE if n.startswith("encoder.layer")]),  # ** may be empty
    ("blocks.*.hook_resid_post", ["blocks.0.hook_resid_post", "blocks.10.hook_resid_post"]),
    ("blocks.?.hook_*", ["blocks.0.hook_resid_post"]),
    ("blocks.[01].**", ["blocks.0.hook_resid_post", "blocks.0.attn.hook_z"]),
    ("*", ["encoder", "hook_embed"]),
    ("**", BERT_LIKE),
    ("*.*.*", ["encoder.layer.0", "encoder.layer.1", "blocks.0.hook_resid_post", "blocks.10.hook_resid_post"]),
])
def test_explicit_lists(pattern, expected):
    assert [n for n in BERT_LIKE if glob_match(pattern, n)] == expected


def test_star_does_not_cross_dots_but_double_star_does():
    assert not glob_match("encoder.layer.*.output", "encoder.layer.0.attention.output")
    assert glob_match("encoder.layer.**.output", "encoder.layer.0.attention.output")
    assert glob_match("encoder.layer.**.output", "encoder.layer.0.output")
    assert not glob_match("blocks.*", "blocks.0.hook_resid_post")


def test_agrees_with_brute_force():
    comps = ["*", "**", "?", "0", "1", "a", "b", "[01]", "a*"]
    names = [".".join(p) for n in range(1, 5) for p in itertools.product(["a", "b", "0", "ab", "10"], repeat=n)]
    for n in range(1, 5):
        for pat in itertools.product(comps, repeat=n):
            pattern = ".".join(pat)
            for name in names[::13]:
                assert glob_match(pattern, name) == brute_force(pattern, name), (pattern, name)


def test_module_paths_use_the_same_rule():
    class Layer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = torch.nn.ModuleDict({"output": torch.nn.Linear(2, 2)})
            self.output = torch.nn.Linear(2, 2)

    net = torch.nn.Module()
    net.layer = torch.nn.ModuleList([Layer(), Layer()])
    assert resolve_hooks(net, "layer.*.output") == ["layer.0.output", "layer.1.output"]
    assert resolve_hooks(net, "**.output") == [n for n in hook_names(net) if n.endswith("output")]
    assert len(resolve_hooks(net, "**.output")) == 4
