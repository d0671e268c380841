"""LIB on the shipped modular-addition transformers against the reference ranges of ApolloResearch/rib (spec §7)."""

import pytest
import torch

from analyses.lib import Config, LIBResult, run
from analyses.lib.modadd import SHIPPED_SEEDS, load_modadd, modadd_data, modadd_meta
from helpers import assert_findings_cite_their_numbers

torch.set_num_threads(2)
RANGES = {"ln1.0": (8, 13), "ln2.0": (13, 17), "unembed": (7, 10)}


def test_shipped_models_grokked():
    for seed in SHIPPED_SEEDS:
        model = load_modadd(seed)
        x, y = modadd_data(seed, "test")
        with torch.no_grad():
            acc = float((model(x)[:, -1].argmax(-1) == y).float().mean())
        assert acc > 0.998, (seed, acc)
        assert abs(acc - modadd_meta(seed)["test_acc"]) < 1e-3        # the training record matches


def test_edge_eval_sets():
    """Edge bisection data: the whole train set by default (rib's configs); random test samples on request."""
    from analyses.lib.studies import _load

    x_tr, y_tr = modadd_data(0, "train")
    x_te, _ = modadd_data(0, "test")
    xe, ye = _load(Config()).edge_eval
    assert torch.equal(xe, x_tr) and torch.equal(ye, y_tr)
    xe, _ = _load(Config(edge_eval_set="test", n_edge_eval_samples=600)).edge_eval
    assert xe.shape[0] == 600 and set(map(tuple, xe.tolist())) <= set(map(tuple, x_te.tolist()))


@pytest.fixture(scope="module")
def small_run():
    """A reduced build (2000 train samples, 1500 test samples, no edge ablation) of seed 0."""
    return run(Config(n_samples=2000, n_eval_samples=1500, compare_pca=False, edge_ablation=False))


def test_node_thresholds_in_reference_range(small_run):
    s = small_run.summary
    assert s["test_accuracy"] > 0.998
    for name, (lo, hi) in RANGES.items():
        assert lo <= s[f"lib_nodes_{name}"] <= hi, (name, s[f"lib_nodes_{name}"])
        assert lo - 1 <= s[f"pca_nodes_{name}"] <= hi + 1


def test_fourier_labels(small_run):
    """Leading ln1 directions are single-frequency, unembed directions cos(k(x+y)) (full build: see slow test)."""
    s = small_run.summary
    assert s["ln1_leading10_single_freq_ge_0.9"] >= 4
    assert 4 <= len(s["ln1_key_frequencies"].split(",")) <= 7
    assert s["unembed_leading10_x_plus_y_ge_0.5"] >= 6


def test_result_roundtrip_and_figures(small_run, tmp_path):
    small_run.save(tmp_path)
    back = LIBResult.load(tmp_path)
    assert back.summary == small_run.summary
    assert_findings_cite_their_numbers(small_run)
    figs = back.figures()
    assert {"node_ablation", "interaction_graph", "fourier_spectra"} <= set(figs)


_FULL: dict[int, LIBResult] = {}


def _full_run(seed: int) -> LIBResult:
    """The spec's seed config on the whole train set; edges bisected on the whole train set as rib's
    ablations_edge_bisect_modular_arithmetic_*_seed*.yaml (return_set: train); cached, one run per seed."""
    if seed not in _FULL:
        _FULL[seed] = run(Config(seed=seed, n_eval_samples=0, edge_eval_set="train", n_edge_eval_samples=0))
    return _FULL[seed]


@pytest.mark.slow
@pytest.mark.parametrize("seed", SHIPPED_SEEDS)
def test_full_reference_config(seed):
    """Node thresholds and Fourier labels of the full build, per seed."""
    r = _full_run(seed)
    for name, (lo, hi) in RANGES.items():
        assert lo <= r.summary[f"lib_nodes_{name}"] <= hi
    assert r.summary["ln1_leading10_single_freq_ge_0.9"] >= 6
    # Each key frequency is a cos/sin pair of ln1 directions, so a model that needs n ln1 nodes (constant included)
    # uses about (n - 1) / 2 frequencies: 5-6 at the reference seed 0's 13 nodes, 3-4 at its seeds 2-3's 8 nodes.
    n_key = len(r.summary["ln1_key_frequencies"].split(","))
    pairs = (r.summary["lib_nodes_ln1.0"] - 1) // 2
    assert pairs - 1 <= n_key <= min(pairs + 1, 6), (n_key, r.summary["lib_nodes_ln1.0"])
    if r.summary["lib_nodes_ln1.0"] >= 11:
        assert 5 <= n_key <= 6
    assert r.summary["unembed_leading10_x_plus_y_ge_0.5"] >= 6


# Spec acceptance 5.3. Edges required in total (ln1.0 + ln2.0 + unembed), LIB / PCA, measured per edge-eval set:
#   seed   whole train set (rib's, asserted)   whole test set     600 test samples (Config default)
#   0      835 (115+92+628) / 868               912 / 1003         905 (123+93+689) / 904 (103+97+704)
#   1      597 (48+44+505)  / 653               636 / 662          652 (60+43+549)  / 632 (65+58+509)
#   2      637 (70+56+511)  / 700               641 / 707          623 (61+56+506)  / 720 (101+60+559)
# LIB <= PCA holds per seed on the whole train or test set; with 600 samples the 0.001 tolerance allows no extra
# error and seeds 0-1 flip. The LIB totals of seeds 1-2 (8 ln1 nodes, 3 key frequencies) are below the reference's
# 653-867 (its seeds need 8-13 ln1 nodes) on every set: recorded as strict xfails, not loosened.
_RANGE_XFAIL = {1: "LIB total 597 < 650 (seed 1 needs 8 ln1 nodes)", 2: "LIB total 637 < 650"}


@pytest.mark.slow
@pytest.mark.parametrize("seed", SHIPPED_SEEDS)
def test_lib_edges_not_more_than_pca_per_seed(seed):
    """Spec acceptance 5.3: on each seed LIB needs no more edges than PCA to stay within 0.001 accuracy."""
    s = _full_run(seed).summary
    assert s["lib_edges_required_total"] <= s["pca_edges_required_total"], s


@pytest.mark.slow
@pytest.mark.parametrize("seed", [pytest.param(s, marks=pytest.mark.xfail(strict=True, reason=_RANGE_XFAIL[s]))
                                  if s in _RANGE_XFAIL else s for s in SHIPPED_SEEDS])
def test_lib_edge_total_in_reference_range(seed):
    """Spec acceptance 5.3: about 650-870 LIB edges in total."""
    lib = _full_run(seed).summary["lib_edges_required_total"]
    assert 650 <= lib <= 870, lib
