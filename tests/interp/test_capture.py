"""Capture equals transformer-lens run_with_cache exactly; position selectors pick the right rows."""

import pytest
import torch

from interp.capture import capture, resolve_hooks
from interp.errors import HookNotFoundError
from interp.positions import Positions


def test_capture_equals_run_with_cache(tiny_model, tokens):
    hooks = ["blocks.*.hook_resid_post", "blocks.0.mlp.hook_post", "blocks.1.attn.hook_z"]
    got = capture(tiny_model, tokens, hooks=hooks)
    _, ref = tiny_model.run_with_cache(tokens)
    assert set(got) == {"blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "blocks.0.mlp.hook_post",
                        "blocks.1.attn.hook_z"}
    for name, value in got.items():
        assert value.dtype == ref[name].dtype
        assert torch.equal(value, ref[name]), name


@pytest.mark.parametrize("spec", ["drop:1", "last", "range:2:5"])
def test_position_selectors(tiny_model, tokens, spec):
    name = "blocks.1.hook_resid_post"
    full = capture(tiny_model, tokens, hooks=name)[name]
    got = capture(tiny_model, tokens, hooks=name, positions=spec)[name]
    sel = Positions.parse(spec)
    seq, pos = sel.index(*tokens.shape)
    assert torch.equal(got, full[seq, pos])
    expected_rows = {"drop:1": 3 * 15, "last": 3, "range:2:5": 3 * 3}[spec]
    assert got.shape == (expected_rows, full.shape[-1])


def test_mask_selector_and_dtype(tiny_model, tokens):
    name = "blocks.0.hook_resid_pre"
    mask = tokens % 2 == 0
    full = capture(tiny_model, tokens, hooks=name)[name]
    got = capture(tiny_model, tokens, hooks=name, positions=mask, dtype=torch.bfloat16)[name]
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, full[mask].to(torch.bfloat16))


def test_batched_capture_concatenates(tiny_model, tokens):
    name = "blocks.1.hook_mlp_out"
    a = capture(tiny_model, tokens, hooks=name, positions="drop:1")[name]
    b = capture(tiny_model, tokens, hooks=name, positions="drop:1", batch_size=2)[name]
    assert torch.allclose(a, b, atol=1e-6)


def test_plain_module_hooks_by_path():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3), torch.nn.ReLU())
    x = torch.randn(10, 5)
    got = capture(net, x, hooks=["1", "3"])
    assert torch.equal(got["1"], torch.relu(net[0](x)))
    assert torch.equal(got["3"], net(x))


def test_stop_early_skips_later_modules():
    calls = []
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    net[1].register_forward_hook(lambda *a: calls.append(1))
    capture(net, torch.randn(1, 2), hooks="0")
    assert calls == []


def test_unknown_hook_lists_closest(tiny_model):
    with pytest.raises(HookNotFoundError, match="closest: .*hook_resid_post"):
        resolve_hooks(tiny_model, "blocks.0.hook_resid_pots")


def test_bad_position_spec():
    from interp.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown position selector"):
        Positions.parse("first")


def test_attention_pattern_rows_are_query_positions(tiny_model, tokens):
    name = "blocks.0.attn.hook_pattern"
    full = capture(tiny_model, tokens, hooks=name)[name]  # [batch, head, q, k]
    rows = capture(tiny_model, tokens, hooks=name, positions="last")[name]
    assert torch.equal(rows, full[:, :, -1, :])


def test_module_output_changed_in_place_later_is_captured_as_computed():
    """ReLU(inplace=True) after a hooked Linear must not change what was captured for the Linear, whichever other
    hooks keep the forward pass running."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(inplace=True), torch.nn.Linear(6, 3))
    x = torch.randn(5, 4)
    with torch.no_grad():
        linear = net[0](x)
    assert bool((linear < 0).any())
    for hooks in (["0"], ["0", "2"]):
        assert torch.equal(capture(net, x, hooks=hooks)["0"], linear)


def test_interp_capture_stays_callable_after_its_module_is_imported(tiny_model, tokens):
    """`import interp.capture` (which extraction does) binds the package attribute to the module of the same name;
    the README's `interp.capture(model, tokens, hooks)` must still work, also when a notebook cell runs twice."""
    import interp
    import interp.capture as module

    assert "capture" in dir(interp) and "open_cache" in dir(interp)  # tab completion sees the lazy names
    direct = capture(tiny_model, tokens[:2], "blocks.0.hook_resid_post")
    for _ in range(2):
        via_package = interp.capture(tiny_model, tokens[:2], "blocks.0.hook_resid_post")
        torch.testing.assert_close(via_package["blocks.0.hook_resid_post"], direct["blocks.0.hook_resid_post"],
                                   rtol=0, atol=0)
    assert module.Capturer is not None  # the module still works as a module
