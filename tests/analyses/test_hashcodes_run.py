"""run(): a tiny sweep end to end, save/load/figures, config errors, and the LM part (skip note + planted probe)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from analyses.hashcodes import Config, HashCodesResult, run
from analyses.hashcodes.digits import load_digits_split, make_mlp
from analyses.hashcodes.lm import probe_categorization
from interp.errors import ConfigError

TINY = dict(widths=[3, 30], seeds=[0], max_epochs=8, epoch_checkpoints=[0, 2, 8], sample_sizes=[20, 200],
            sample_widths=[8], sample_seeds=[0], lm=False)


def test_run_tiny_save_load_figures(tmp_path):
    res = run(Config(**TINY))
    assert isinstance(res, HashCodesResult)
    a = res.arrays
    assert a["width.rr_test"].shape == (2, 1) and a["epochs.rr_test"].shape == (2, 3, 1)
    assert a["samples.rr_test"].shape == (1, 2, 1) and a["phase.epochs.regime"].shape == (2, 3)
    assert a["width.rr_train"][0, 0] > a["width.rr_train"][1, 0] >= 0  # 3 units collide more than 30
    assert a["width.n_bits"][0, 0] <= 3
    # epoch 0 is the untrained seed-0 net: its RR, recomputed here from the weights with numpy and set counting
    data = load_digits_split()
    for wi, w in enumerate(TINY["widths"]):
        lin = make_mlp(64, w, seed=0)[0].double()
        W, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
        c_tr, c_te = ((x.double().numpy() @ W.T + b) > 0 for x in (data.X_train, data.X_test))
        keep = np.concatenate([c_tr, c_te]).std(0) > 0  # not constant over train ∪ test
        for c, key in ((c_tr, "rr_train"), (c_te, "rr_test")):
            n_unique = len({r.tobytes() for r in c[:, keep]})
            assert a[f"epochs.{key}"][wi, 0, 0] == (len(c) - n_unique) / len(c), (w, key)
        assert a["epochs.n_bits"][wi, 0, 0] == keep.sum()
    # the last checkpoint (epoch 8 = max_epochs) is the trained net that the width arrays describe
    for key in ("rr_train", "rr_test", "n_bits", "test_acc"):
        assert np.array_equal(a[f"epochs.{key}"][:, -1], a[f"width.{key}"]), key
    assert not np.array_equal(a["epochs.rr_train"][:, 0], a["epochs.rr_train"][:, -1])  # training moved the codes
    assert res.details["lm"]["status"] == "skipped"
    assert len(res.findings) == 7 and all(f.consistent() for f in res.findings)
    widths = list(a["width.values"])
    for f in res.findings:  # each finding cites a seed mean of the array it names, at one of its widths
        if f.measured is not None:
            means = np.nanmean(a[f.key], axis=1)
            assert any(np.isclose(f.measured, means[i]) for i in range(len(widths))), f
    res.save(tmp_path)
    doc = json.loads((tmp_path / "result.json").read_text())
    assert doc["analysis"] == "hashcodes" and "rr_test@w30" in doc["summary"]
    back = HashCodesResult.load(tmp_path)
    figs = back.figures()
    assert {"redundancy_vs_width", "categorization_vs_width", "redundancy_vs_epochs", "phase_chart_epochs",
            "redundancy_vs_samples", "categorization_vs_samples", "phase_chart_samples"} <= set(figs)
    assert np.allclose(figs["phase_chart_epochs"].data[0].z, a["phase.epochs.rr_train"], equal_nan=True)


def test_config_errors():
    for bad in (dict(sweep="huge"), dict(widths=[0]), dict(epoch_metrics=["svm"]), dict(schedule="sgd"),
                dict(drop_fit_on="test"), dict(rr_sufficient=0.6, rr_under=0.5), dict(seeds=[])):
        with pytest.raises(ConfigError):
            run(Config(**bad))
    full = Config(sweep="full").resolved()
    assert len(full.widths) > 20 and len(full.seeds) == 10


def test_lm_part_skips_with_note_when_model_absent():
    from analyses.hashcodes.lm import lm_codes

    lm = lm_codes(Config(model="no-such-suite"))
    assert lm.status == "skipped" and "no-such-suite" in lm.details["note"] and lm.arrays == {}


def test_probe_categorization_recovers_planted_labels():
    """Codes built from planted feature/answer bits (plus noise bits) must categorise both almost perfectly."""
    rng = np.random.default_rng(0)
    n = 400
    feats = np.array(["f0", "f1", "f2", "f3"])[rng.integers(0, 4, n)]
    answers = np.array([" a", " b"])[rng.integers(0, 2, n)]
    proto_f = {f: rng.integers(0, 2, 40) for f in np.unique(feats)}
    proto_a = {a: rng.integers(0, 2, 20) for a in np.unique(answers)}
    codes = np.stack([np.concatenate([proto_f[f], proto_a[a], rng.integers(0, 2, 30)]) for f, a in
                      zip(feats, answers)]).astype(np.uint8)
    res = probe_categorization(codes, feats, answers)
    assert res["feature_knn"] == 1.0 and res["feature_logreg"] == 1.0
    for f, r in res["answer_by_feature"].items():
        assert r["knn"] >= 0.95 and r["logreg"] >= 0.95, f


@pytest.mark.slow
def test_lm_part_on_embedded_default():
    """On the embedded default (skipped until data/models holds it): planted answers are readable from codes."""
    from interp.models import DEFAULT_MODEL, embedded_names

    if DEFAULT_MODEL not in embedded_names():
        pytest.skip("embedded default model not in data/models yet")
    from analyses.hashcodes.lm import lm_codes

    torch.set_num_threads(1)
    lm = lm_codes(Config(lm_tokens=2048, lm_probes_per_feature=60))
    details, arrays = lm.details, lm.arrays
    assert details["status"] == "ok" and len(arrays["lm.rr_per_layer"]) == len(details["hooks"])
    assert details["probes"]["feature_knn"] > 0.5
    assert 0 <= details["tokens"]["rr_all"] <= min(r["rr"] for r in details["tokens"]["per_hook"].values())
