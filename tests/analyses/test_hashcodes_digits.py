"""Digits MLPs: the trainer against independent references, and the issue's 3-seed numbers (reduced + full)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analyses.hashcodes.config import Config
from analyses.hashcodes.digits import load_digits_split, make_mlp
from analyses.hashcodes.ensemble import train_ensemble
from analyses.hashcodes.studies import findings
from analyses.hashcodes.sweeps import evaluate_codes, regimes
from interp.errors import ConfigError


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny networks: one thread avoids OpenMP spin-waiting on the shared cores."""
    from threadpoolctl import threadpool_limits

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def test_split_and_glorot_init(digits):
    assert digits.X_train.shape == (1437, 64) and digits.X_test.shape == (360, 64)
    assert float(digits.X_train.max()) == 1.0 and np.bincount(digits.y_test).min() >= 35
    m = make_mlp(64, 200, seed=0)
    bound = np.sqrt(6 / (64 + 200))
    w = m[0].weight.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound  # U(-b, b), sklearn's Glorot
    assert np.abs(m[0].bias.detach().numpy()).max() <= bound
    with pytest.raises(ConfigError):
        make_mlp(64, 0)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_ensemble_members_match_modules_in_float64(digits, batchnorm):
    """Each member as a plain nn.Sequential (eval mode) gives the ensemble's logits."""
    ens, _ = train_ensemble(digits, 7, [0, 1], batchnorm=batchnorm, max_epochs=2,
                            schedule="paper" if batchnorm else "sklearn")
    out = ens.forward(digits.X_test)
    for i in range(ens.size):
        with torch.no_grad():
            ref = ens.member(i).double()(digits.X_test.double())
        assert torch.allclose(out[i].double(), ref, atol=1e-5)


def test_member_trains_as_it_would_alone(digits):
    """Batching must not couple members: member 1 of an ensemble equals the same seed trained alone."""
    subset = np.arange(0, 1437, 3)
    both, info = train_ensemble(digits, 12, [3, 5], max_epochs=4, train_idx=[np.arange(1437)[:479], subset],
                                tile_to=None)
    alone, _ = train_ensemble(digits, 12, [5], max_epochs=4, train_idx=[subset])
    for a, b in zip(both.params(), alone.params()):
        assert torch.allclose(a[1], b[0], atol=1e-5)
    assert info.epochs == [4, 4]


def test_regimes_thresholds():
    r = regimes(np.array([[0.9, 0.3, 0.0], [np.nan, 0.01, 0.5]]), 0.01, 0.5)
    assert r.tolist() == [[0, 1, 2], [-1, 2, 0]]


def _width_means(digits, widths, metrics, seeds=(0, 1, 2)):
    cfg = Config(lr_max_iter=1000, lr_solver="lbfgs")  # as the spec's digits table
    out = {}
    for w in widths:
        ens, _ = train_ensemble(digits, w, list(seeds))
        rs = [evaluate_codes(ens.member(i), digits, cfg, metrics) for i in range(ens.size)]
        out[w] = {k: float(np.mean([r[k] for r in rs])) for k in rs[0] if not isinstance(rs[0][k], dict)}
    return out


def test_digits_reduced_three_seeds(digits):
    """Fast subset of the issue's digits numbers: widths 10 and 100, RR and 9-NN Hamming."""
    m = _width_means(digits, [10, 100], ("knn",))
    assert m[10]["rr_test"] >= 0.9 and m[10]["knn"] <= 0.45
    assert m[100]["rr_test"] <= 0.02 and m[100]["knn"] >= 0.85
    for w in m:
        assert m[w]["rr_train"] >= m[w]["rr_test"]


def test_trivial_net_width2_three_seeds(digits):
    """Spec acceptance 5 (3-seed mean, seeds 0-2 as in the spec's table): at width 2, RR >= 0.95, and the 9-NN
    claim (<= 0.25) judged on the tie-aware accuracy.

    With <= 2 live bits nearly every neighbour ties at distance 0, so the score is that of the tie rule: the
    default exact brute force (scikit-learn's brute tie order) gives 0.217 / 0.206 / 0.275 (mean 0.232), the
    ball tree of knn_algorithm='auto' 0.308 / 0.328 / 0.275 (0.304). Measured over seeds 0-9 the brute mean is
    0.258 (ball tree 0.290; the expected accuracy under uniformly random tie-breaking 0.281; scikit-learn
    MLPClassifier codes: brute 0.269, ball tree 0.240), so the 0.25 bound holds for the spec's seeds only."""
    m = _width_means(digits, [2], ("knn",))[2]
    assert m["rr_test"] >= 0.95 and m["rr_train"] >= 0.95, m
    # the paper's procedure (9-NN with a fixed tie order) is not asserted: which of the many neighbours tied at
    # distance 0 it takes decides its number (0.232 or 0.281 on these seeds, by the order training rows arrive)
    arrays = {"width.values": np.array([2]), **{f"width.{k}": np.array([[m.get(k, np.nan)]]) for k in
                                                ("rr_train", "rr_test", "knn", "knn_tie_aware", "logreg",
                                                 "kmeans_test")}}
    found = {f.key: f for f in findings(arrays)}  # run() judges the claim on the tie-aware number
    tie = found["width.knn_tie_aware"]
    assert tie.measured == pytest.approx(m["knn_tie_aware"]) and tie.consistent()
    assert tie.verdict == ("held" if m["knn_tie_aware"] <= 0.25 else "did not hold")
    assert 0.1 < m["knn_tie_aware"] < 0.4  # chance is 0.1; most neighbours tie at distance 0


@pytest.mark.slow
def test_digits_issue_numbers_three_seeds(digits):
    """All of the issue's digits criteria (3-seed means, trained one-hidden-layer ReLU MLPs)."""
    widths = [2, 5, 10, 20, 40, 100, 200]
    m = _width_means(digits, widths, ("kmeans", "knn", "logreg"))
    for w in widths:
        assert m[w]["rr_train"] >= m[w]["rr_test"], w
        if w <= 10:
            assert m[w]["rr_test"] >= 0.9 and m[w]["knn"] <= 0.45 and m[w]["logreg"] <= 0.45, (w, m[w])
        if w >= 100:
            assert m[w]["rr_test"] <= 0.02, (w, m[w])
            assert m[w]["knn"] >= 0.85 and m[w]["logreg"] >= 0.87, (w, m[w])
            assert 0.55 <= m[w]["kmeans_test"] <= 0.72, (w, m[w])
    assert 0.15 <= m[40]["rr_test"] <= 0.40
    # issue: RR_train = 0 at width 200 (the spec's table: 0.000 at 3 decimals). Seeds 0-2 give 1, 2, 0 colliding
    # training samples (0.0007); scikit-learn's MLPClassifier gives 0, 0, 1 for the same seeds. Ten seeds: below.
    assert m[200]["rr_train"] * 1437 <= 1.0


@pytest.mark.slow
def test_width200_train_collisions_match_scikit_learn_over_ten_seeds(digits):
    """RR_train at width 200 is 0 to the spec table's 3 decimals over 10 seeds, and our trainer's collision count
    is within Poisson noise of scikit-learn's MLPClassifier (the reference's model), which also collides: exact 0
    for every seed is not a property of the method (measured: sklearn 4, ours 6 colliding samples in 10 seeds)."""
    from sklearn.neural_network import MLPClassifier

    from analyses.hashcodes.codes import nonconstant_mask, redundancy_ratio

    seeds = list(range(10))
    Xtr, Xte = digits.X_train.double(), digits.X_test.double()

    def collisions(pre_tr: np.ndarray, pre_te: np.ndarray) -> int:
        ctr, cte = (pre_tr > 0).astype(np.uint8), (pre_te > 0).astype(np.uint8)
        keep = nonconstant_mask(ctr, cte)
        return round(redundancy_ratio(ctr[:, keep]) * len(ctr))

    ref = []
    for s in seeds:
        m = MLPClassifier(hidden_layer_sizes=(200,), random_state=s, max_iter=500).fit(Xtr.numpy(), digits.y_train)
        ref.append(collisions(Xtr.numpy() @ m.coefs_[0] + m.intercepts_[0], Xte.numpy() @ m.coefs_[0] +
                              m.intercepts_[0]))
    ens, _ = train_ensemble(digits, 200, seeds)
    ours = []
    for i in range(len(seeds)):
        with torch.no_grad():
            layer = ens.member(i)[0].double()
            ours.append(collisions(layer(Xtr).numpy(), layer(Xte).numpy()))
    rr_ours, rr_ref = np.mean(ours) / len(Xtr), np.mean(ref) / len(Xtr)
    assert round(rr_ours, 3) == 0.0 and round(rr_ref, 3) == 0.0, (ours, ref)
    assert abs(sum(ours) - sum(ref)) <= 3 * np.sqrt(max(1, sum(ours) + sum(ref))), (ours, ref)


@pytest.mark.slow
def test_training_time_rr_rises_then_decays_without_bn(digits):
    """The rise-then-decay shape holds on digits without BN: with the scikit-learn schedule the test RR at width 40
    rises from the untrained net (~0.05) to a peak near epoch 30 (~0.29) and then decays (~0.18 at the end).
    The spec's own variant (BN + the paper's schedule) is checked in the tests below."""
    cfg = Config()
    rr: dict[int, list[float]] = {}

    def on_ckpt(epoch, ens):
        rr[epoch] = [evaluate_codes(ens.member(i), digits, cfg, ())["rr_test"] for i in range(ens.size)]

    train_ensemble(digits, 40, [0, 1], checkpoints=[0, 30, 500], on_checkpoint=on_ckpt)
    m = {e: float(np.mean(v)) for e, v in rr.items()}
    assert m[30] > m[0] + 0.1 and m[500] < m[30], m


BN_EPOCHS = [0, 1, 3, 10, 60]


@pytest.fixture(scope="module")
def bn_rr(digits):
    """Spec acceptance 6 setting: BN + ReLU, width 40, Adam lr 1e-2 decayed x0.1 every 20 epochs, batch 64, no early
    stop (as the reference's training-time script), seeds 0-9: mean (RR_train, RR_test) per checkpoint."""
    rr: dict[int, np.ndarray] = {}
    cfg = Config()

    def on_ckpt(epoch, ens):
        r = [evaluate_codes(ens.member(i), digits, cfg, ()) for i in range(ens.size)]
        rr[epoch] = np.array([[x["rr_train"], x["rr_test"]] for x in r]).mean(0)

    train_ensemble(digits, 40, list(range(10)), batchnorm=True, schedule="paper", early_stopping=False,
                   max_epochs=BN_EPOCHS[-1], checkpoints=BN_EPOCHS, on_checkpoint=on_ckpt)
    return rr


def test_training_time_bn_paper_schedule_decays(bn_rr):
    """Spec acceptance 6, the decay (10-seed means, measured: RR_train 0.099 / 0.060 / 0.024 / 0.0099 / 0.0068,
    RR_test 0.022 / 0.020 / 0.0058 / 0.0028 / 0.0022 at epochs 0 / 1 / 3 / 10 / 60): RR falls after epoch 1 and
    stays down. Single seeds are noisy at this RR (1/360 per test collision): seeds 0-1 alone give RR_test 0.013 ->
    0.022 from epoch 0 to 1, a rise of 3 samples that the 10-seed mean does not show."""
    for j in (0, 1):  # train, test
        r = [bn_rr[e][j] for e in BN_EPOCHS]
        assert r[2] < r[1] and r[3] < r[2] and r[4] <= r[3], (j, r)
        assert r[4] < 0.25 * r[1], (j, r)


@pytest.mark.xfail(strict=True, reason="not reproduced on digits: with BN + the paper's schedule the 10-seed mean "
                   "RR falls from epoch 0 to 1 (train 0.099 -> 0.060, test 0.022 -> 0.020); the spec's rise after "
                   "epoch 1 is read off MNIST (784-d, 750 steps per epoch vs 23 here)")
def test_training_time_bn_paper_schedule_rises_after_epoch1(bn_rr):
    """Spec acceptance 6, the rise: RR (train and test) at epoch 1 above the untrained net's."""
    assert bn_rr[1][0] > bn_rr[0][0] and bn_rr[1][1] > bn_rr[0][1], bn_rr
