"""End-to-end on the embedded massive-activation suite: trajectories, fits, detection, interventions, resume."""

import numpy as np
import pytest

from analyses.massive import Config, MassiveResult, run
from helpers import assert_findings_cite_their_numbers
from interp import models

SUITE = "toy-pythia-massive"
needs_suite = pytest.mark.skipif(SUITE not in models.embedded_names(), reason=f"{SUITE} not in data/models")


@needs_suite
def test_massive_run_subset_save_load_figures_and_resume(tmp_path):
    steps = [0, 32, 256, 1000, 2000, 4248]
    cfg = Config(model=SUITE, checkpoints=steps, n_inputs=4, ctx=64, compare_alternatives=False, intervene=False,
                 cache_dir=str(tmp_path / "cache"))
    r = run(cfg)
    assert r.arrays["ratio_of_means"].shape == (6, 4) and r.arrays["top"].shape == (6, 4, 4, 3)
    # the aggregates are the per-input arrays averaged two ways (independent recomputation)
    top1, med = r.arrays["top"][..., 0], r.arrays["median"]
    np.testing.assert_allclose(r.arrays["ratio_of_means"], top1.mean(-1) / med.mean(-1))
    np.testing.assert_allclose(r.arrays["mean_of_ratios"], (top1 / med).mean(-1))
    assert len(r.details["fits"]) == 4 and len(list((tmp_path / "cache").glob("step*.json"))) == 6
    assert_findings_cite_their_numbers(r)
    # resume: a rerun reads every checkpoint from the cache and gives the same numbers
    again = run(cfg)
    np.testing.assert_array_equal(again.arrays["top"], r.arrays["top"])
    r.save(tmp_path / "out")
    back = MassiveResult.load(tmp_path / "out")
    assert back.summary["growth_final_over_step0_max"] == pytest.approx(r.summary["growth_final_over_step0_max"])
    np.testing.assert_array_equal(back.arrays["fit_curves"], r.arrays["fit_curves"])
    figs = back.figures()
    assert {"ratio_heatmap", "trajectories", "top_activations"} <= set(figs)
    assert len(figs["trajectories"].data) == 8  # 4 layers + 4 fitted curves
    # a NaN fit quality (a constant trajectory) is stored as null: the reloaded result still draws every figure
    r.details["fits"][0]["r2"] = float("nan")
    nan_back = MassiveResult.load(r.save(tmp_path / "nan"))
    assert nan_back.details["fits"][0]["r2"] is None
    assert "R² n/a" in nan_back.figures()["trajectories"].data[1].name


@needs_suite
@pytest.mark.slow
def test_massive_run_full_suite_emergence_fit_intervention():
    r = run(Config(model=SUITE))
    s = r.summary
    assert s["n_checkpoints"] == 9 and s["n_layers"] == 4
    assert s["growth_final_over_step0_max"] >= 10  # ratio grows ≥ 10× (6.0 → 64.8 in layer 2)
    assert all(f["r2"] >= 0.9 for f in r.details["fits"])
    assert s["n_detected_final"] > 0 and not s["sun_criteria_met_final"]  # |a| < 100: only relative criteria
    assert s["delta_loss_zero"] > 5 * abs(s["delta_loss_zero_control"])  # zeroing massive dims hurts
    assert abs(s["delta_loss_mean"]) < 0.1 * s["delta_loss_zero"]  # setting them to their mean does not


@pytest.mark.slow
@pytest.mark.skipif("toy-pythia-4l" not in models.embedded_names(), reason="toy-pythia-4l not in data/models")
def test_massive_run_default_suite():
    """Spec check 4 on the embedded default (4 layers, d 128): the ratio grows, every layer's fit has R² ≥ 0.9."""
    r = run()
    s, a = r.summary, r.arrays
    assert s["model"] == "toy-pythia-4l" and a["ratio_of_means"].shape == (s["n_checkpoints"], 4)
    assert np.all(a["ratio_of_means"][-1] > a["ratio_of_means"][0])  # measured 6.8 → 25.2 (3.7×)
    assert all(f["r2"] >= 0.9 for f in r.details["fits"])
    assert {iv["mode"] for iv in r.details["interventions"]} == {"zero", "mean"}
