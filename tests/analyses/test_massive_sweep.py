"""Checkpoint sweep: per-checkpoint JSON cache, resume after interruption, key invalidation, hub error offline."""

import json

import numpy as np
import pytest
import torch

from analyses.massive.method import layer_outputs, massive_stats
from analyses.massive.sweep import checkpoint_sweep
from interp.errors import HubUnavailableError


def _model(step: int):
    """A random-weight 'checkpoint': the seed is the step, so each step is a different model."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, d_vocab=50, n_ctx=16,
                                  act_fn="gelu", normalization_type="LN", seed=step, device="cpu")
    return HookedTransformer(cfg).eval()


TOKENS = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(0))


def _metric(model, step):
    st = massive_stats(layer_outputs(model, TOKENS))
    return {"ratio": st["ratio"].tolist(), "top": st["top"].tolist()}


def test_massive_sweep_caches_and_resumes(tmp_path):
    loads = []

    def loader(name, step):
        loads.append(step)
        return _model(step)

    full = checkpoint_sweep("toy", _metric, [0, 1, 2, 4], cache_dir=tmp_path, key="k1", loader=loader)
    assert loads == [0, 1, 2, 4] and sorted(p.name for p in tmp_path.glob("*.json")) == [
        "step0.json", "step1.json", "step2.json", "step4.json"]
    # the cached numbers are the metric's numbers (independent recomputation)
    assert full[2] == json.loads(json.dumps(_metric(_model(2), 2)))
    # interrupted sweep: step 2 never finished (file missing) and step 4 was torn mid-write
    (tmp_path / "step2.json").unlink()
    (tmp_path / "step4.json").write_text('{"key": "k1", "st')
    loads.clear()
    again = checkpoint_sweep("toy", _metric, [0, 1, 2, 4], cache_dir=tmp_path, key="k1", loader=loader)
    assert loads == [2, 4] and again == full
    # a different key (other tokens / options) recomputes everything
    loads.clear()
    checkpoint_sweep("toy", _metric, [0, 1], cache_dir=tmp_path, key="k2", loader=loader)
    assert loads == [0, 1]


def test_massive_trajectory_equals_per_checkpoint_stats():
    from analyses.massive import ma_trajectory

    steps, r = ma_trajectory("toy", TOKENS, [0, 3], loader=lambda name, s: _model(s))
    assert steps.tolist() == [0.0, 3.0] and r.shape == (2, 2)
    for i, s in enumerate((0, 3)):  # brute force: max and numpy median of |h| per input, then ratio of means
        h = layer_outputs(_model(s), TOKENS).abs().flatten(2).numpy()  # [L, B, S·d]
        want = h.max(-1).mean(-1) / np.median(h, axis=-1).mean(-1)
        np.testing.assert_allclose(r[i], want, rtol=1e-12)


def test_massive_sweep_pythia_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError):
        checkpoint_sweep("pythia-14m", _metric, [0])
