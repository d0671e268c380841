"""Data-parallel reading of a cache with two gloo processes on CPU: the streaming least squares and the dark-matter
linear-error fit equal the single-process ones to 1e-10, and data-parallel SAE training on 2 ranks with batch b
follows single-process training with batch 2b."""

import pytest
import torch

from helpers import extract_config, spawn_ranks

H0, H1 = "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"
B, STEPS = 64, 40  # per-rank batch and training steps: 40 steps of 2 x 64 rows (past one epoch of 4096 rows)
SAE_KW = {"hook": H1, "d_sae": 64, "architecture": "standard", "l1_coefficient": 1.0, "lr": 3e-3, "seed": 0,
          "training_tokens": STEPS * 2 * B + 1}  # not a multiple of 2B: one process takes a 41st step, so must DP


def _worker(rank: int, world: int, init_file: str, cache: str, sae_dir: str, out: str) -> None:
    import torch.distributed as dist

    from analyses.dark_matter.streaming import fit_linear_error_from_cache
    from interp.sae_training import train_sae
    from interp.saes import load_sae
    from interp.stats.lstsq import lstsq_from_cache

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    res = {}
    kw = {"start": 100, "stop": 3950, "batch_size": 300}  # 13 batches: rank 0 reads 7, rank 1 reads 6
    res["lstsq"] = lstsq_from_cache(cache, H0, H1, **kw)  # rank/world from the process group
    res["lstsq_single"] = lstsq_from_cache(cache, H0, H1, **kw, rank=0, world=1)
    res["one_batch"] = lstsq_from_cache(cache, H0, H1, stop=500, batch_size=500)  # rank 1 reads nothing
    res["one_batch_single"] = lstsq_from_cache(cache, H0, H1, stop=500, batch_size=500, rank=0, world=1)
    sae = load_sae(sae_dir)
    res["dm"] = fit_linear_error_from_cache(cache, H1, sae, rows=(50, 4000), batch_size=256)
    res["dm_single"] = fit_linear_error_from_cache(cache, H1, sae, rows=(50, 4000), batch_size=256, rank=0, world=1)
    res["sae"] = train_sae(cache, batch_size=B, **SAE_KW).state_dict()
    torch.save(res, f"{out}.{rank}")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_neox_dir, text_file):
    from interp.extract import extract
    from interp.sae_training import train_sae
    from interp.saes import save_sae

    tmp = tmp_path_factory.mktemp("dp")
    cache = tmp / "cache"
    extract(extract_config(cache, tiny_neox_dir, text_file, tokens=4096, hooks=[H0, H1]), progress=False)
    single = train_sae(str(cache), batch_size=2 * B, **SAE_KW)  # the single-process run with the global batch
    save_sae(single, tmp / "sae", storage_dtype="float32")
    other = train_sae(str(cache), batch_size=B, **SAE_KW)  # another trajectory: how far "different" is
    spawn_ranks(_worker, (2, str(tmp / "init"), str(cache), str(tmp / "sae"), str(tmp / "res")))
    got = [torch.load(f"{tmp / 'res'}.{r}", weights_only=False) for r in range(2)]
    return {"ranks": got, "single": single.state_dict(), "other": other.state_dict(), "cache": cache}


def _max_diff(a, b) -> float:
    """Largest |difference| of W and b between two LstsqSolutions (or fits holding one) of the same row count."""
    a, b = getattr(a, "solution", a), getattr(b, "solution", b)
    assert a.n == b.n
    return max((getattr(a, name) - getattr(b, name)).abs().max().item() for name in ("W", "b"))


def test_lstsq_from_cache_two_ranks_equal_single(runs) -> None:
    from interp.cache import open_cache
    from interp.stats.lstsq import lstsq

    r0, r1 = runs["ranks"]
    assert _max_diff(r0["lstsq"], r0["lstsq_single"]) < 1e-10
    assert _max_diff(r1["lstsq"], r0["lstsq_single"]) < 1e-10  # every rank returns the fit over all rows
    assert _max_diff(r0["one_batch"], r0["one_batch_single"]) < 1e-10
    assert _max_diff(r1["one_batch"], r0["one_batch_single"]) < 1e-10
    c = open_cache(runs["cache"])
    ref = lstsq(c.read(H0, 100, 3950), c.read(H1, 100, 3950))  # the in-memory fit of the same rows
    assert _max_diff(r0["lstsq"], ref) < 1e-8


def test_linear_error_fit_two_ranks_equal_single(runs) -> None:
    r0, r1 = runs["ranks"]
    for dm in (r0["dm"], r1["dm"]):
        assert _max_diff(dm, r0["dm_single"]) < 1e-10
        assert dm.n == 3950
        for k in ("ss_tot", "ss_res"):
            torch.testing.assert_close(getattr(dm, k), getattr(r0["dm_single"], k), rtol=1e-10, atol=0)
        assert dm.r2 == pytest.approx(r0["dm_single"].r2, rel=1e-10, abs=0)
        assert dm.fvu_sae == pytest.approx(r0["dm_single"].fvu_sae, rel=1e-10, abs=0)


def test_data_parallel_sae_training_follows_single_process(runs) -> None:
    r0, r1 = runs["ranks"]
    for name, p in r0["sae"].items():
        assert torch.equal(p, r1["sae"][name]), name  # gradients all-reduced: both ranks hold the same SAE
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        p, q = r0["sae"][name], runs["single"][name]
        rel = ((p - q).norm() / q.norm()).item()
        assert rel < 1e-5, (name, rel)  # measured ~1e-7: float32 rounding of batches of 64 vs 128 rows
        assert ((runs["other"][name] - q).norm() / q.norm()).item() > 1e-3  # batch 64 on one process is not


def test_norm_factor_is_sae_lens_estimate() -> None:
    from sae_lens.training.activation_scaler import ActivationScaler

    from interp.sae_training import _norm_scaling_factor

    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(100, 24, generator=g) * 3 + 1 for _ in range(7)]
    ref = ActivationScaler()
    ref.estimate_scaling_factor(24, iter(batches), n_batches_for_norm_estimate=5)
    rest = iter(batches)
    assert _norm_scaling_factor(rest, 24, 5, world=1, device="cpu") == ref.scaling_factor  # bit for bit
    assert next(rest) is batches[5]  # consumed as sae-lens consumes them


def test_world_without_process_group_is_refused() -> None:
    from interp.distributed import data_split
    from interp.errors import ConfigError

    assert data_split() == (0, 1) and data_split(0, 1) == (0, 1)
    with pytest.raises(ConfigError, match="needs torch.distributed initialised"):
        data_split(1, 2)
    with pytest.raises(ConfigError, match="is not in a world"):
        data_split(2, 2)


def test_rank_samples_give_the_single_process_step_count() -> None:
    """sae-lens steps while seen < total and sizes its schedule by total // batch: for every total, W ranks of
    batch b must match one process of batch W·b on both counts (brute force over small sizes)."""
    from interp.sae_training import _rank_samples

    for world in (2, 3, 4):
        for b in (2, 3, 8):
            for total in range(1, 200):
                s = _rank_samples(total, b, world)
                assert -(-s // b) == -(-total // (world * b)), (world, b, total)  # steps taken (ceil)
                assert s // b == total // (world * b), (world, b, total)  # schedule length (floor)

