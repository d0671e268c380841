"""On a GPU (Triton latent_stats, CUDA sorts and scatters) the browser's statistics equal the CPU build's exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import browser_support as B
from interp.browser.collect import collect
from interp.cache import open_cache

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_gpu_collect_equals_cpu(tmp_path):
    w = B.make_sae(tmp_path / "sae")
    reader = open_cache(B.make_cache(tmp_path / "cache", B.make_data()))
    kw = {"k_top": 7, "n_bins": 16, "n_quantiles": 4, "per_quantile": 3, "dense": (reader, B.HOOK_X)}
    wt = {k: torch.from_numpy(v) for k, v in w.items()}
    cpu = collect(reader, B.HOOK_LAT, device="cpu", sae_weights=wt, **kw)
    gpu = collect(reader, B.HOOK_LAT, device="cuda", backend="auto", sae_weights={k: v.cuda() for k, v in wt.items()},
                  **kw)
    for name in ("count", "lo", "hi", "top_rows", "top_vals", "hist", "qbin", "sample_rows", "sample_vals"):
        assert np.array_equal(getattr(cpu, name), getattr(gpu, name), equal_nan=True), name
    np.testing.assert_allclose(gpu.total, cpu.total, rtol=1e-12)
    np.testing.assert_allclose(gpu.err_corr, cpu.err_corr, atol=1e-5, equal_nan=True)
