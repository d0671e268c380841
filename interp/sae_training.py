"""Training sparse autoencoders with sae-lens on activations from interp's cache or any tensor source (wandb off,
no hub datasets), on one process or data-parallel over torchrun ranks.

    sae = train_sae(open_cache("cache").iter_batches, hook="blocks.2.hook_resid_post", d_sae=1024, k=16)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch

from interp.distributed import all_reduce_sum, data_split, local_device
from interp.errors import ConfigError

ARCHITECTURES = ("topk", "jumprelu", "standard")


def _rank_samples(total: int, batch_size: int, world: int) -> int:
    """Samples per rank so that W ranks of batch b take the steps of one process of batch W·b over `total`:
    sae-lens steps while seen < total (ceil(total / (W·b)) steps) and sizes its lr schedule by
    total // (W·b); T // W alone gives one step fewer when total % (W·b) is below W."""
    if world == 1:
        return total
    full, rest = divmod(total, batch_size * world)
    return full * batch_size + (1 if rest else 0)


def tensor_batches(acts: torch.Tensor, batch_size: int, *, seed: int = 0) -> Iterator[torch.Tensor]:
    """Endless shuffled minibatches [batch_size, d] from an in-memory [N, d] tensor (new permutation each epoch)."""
    if acts.shape[0] < batch_size:
        raise ConfigError(f"only {acts.shape[0]} rows for batches of {batch_size}", hint="lower the batch size")
    g = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(acts.shape[0], generator=g)
        for s in range(0, acts.shape[0] - batch_size + 1, batch_size):
            yield acts[perm[s:s + batch_size]].float()


def cache_activations(cache_dir: str | os.PathLike, hook: str, *, max_rows: int | None = None) -> torch.Tensor:
    """Read up to `max_rows` rows [n, d] of one hook from an interp cache directory."""
    from interp.cache import open_cache

    reader = open_cache(cache_dir)
    chunks, n = [], 0
    for batch in reader.iter_batches(hook, 65_536):
        chunks.append(batch.float())
        n += batch.shape[0]
        if max_rows is not None and n >= max_rows:
            break
    if not chunks:
        raise ConfigError(f"cache {cache_dir} has no rows for {hook}", hint="run `interp extract` for that hook")
    out = torch.cat(chunks)
    return out[:max_rows] if max_rows is not None else out


def training_config(architecture: str, d_in: int, d_sae: int, *, k: int = 16, target_l0: float | None = None,
                    l1_coefficient: float = 5.0, jumprelu_init_threshold: float = 0.5,
                    l0_coefficient: float = 10.0) -> Any:
    """The sae-lens training config for one architecture (activations normalised to mean norm √d_in)."""
    from sae_lens import JumpReLUTrainingSAEConfig, StandardTrainingSAEConfig, TopKTrainingSAEConfig

    common = {"d_in": d_in, "d_sae": d_sae, "normalize_activations": "expected_average_only_in"}
    if architecture == "topk":
        return TopKTrainingSAEConfig(k=k, **common)
    if architecture == "jumprelu":
        return JumpReLUTrainingSAEConfig(jumprelu_sparsity_loss_mode="quadratic", target_l0=float(target_l0 or k),
                                         l0_coefficient=l0_coefficient, jumprelu_init_threshold=jumprelu_init_threshold,
                                         jumprelu_ste_to_input=True, **common)
    if architecture == "standard":
        return StandardTrainingSAEConfig(l1_coefficient=l1_coefficient, **common)
    raise ConfigError(f"unknown SAE architecture '{architecture}'", hint=f"use one of {', '.join(ARCHITECTURES)}")


@torch.no_grad()
def _norm_scaling_factor(data: Iterator[torch.Tensor], d_in: int, n_batches: int, world: int, device: str) -> float:
    """sae-lens' "expected_average_only_in" factor √d_in / mean‖x‖ over the next `n_batches` batches (consumed, as
    sae-lens consumes them), summed in the same order as sae-lens and, with world > 1, over all ranks."""
    total, count = 0.0, 0
    for _ in range(n_batches):
        norms = next(data).norm(dim=-1)
        total += norms.float().sum().item()
        count += norms.numel()
    if world > 1:
        sums = all_reduce_sum(torch.tensor([total, count], dtype=torch.float64, device=device))
        total, count = float(sums[0]), int(sums[1])
    return (d_in ** 0.5) / (total / count)


def _data_parallel_trainer(base: type, world: int) -> type:
    """SAETrainer whose dead-feature state follows the global batch: a feature is dead when it fired on no rank."""
    import torch.distributed as dist

    class DataParallelSAETrainer(base):  # type: ignore[misc, valid-type]
        def _train_step(self, sae: Any, sae_in: torch.Tensor) -> Any:
            out = super()._train_step(sae=sae, sae_in=sae_in)
            # steps since the feature fired anywhere = the minimum over ranks of the steps since it fired locally
            dist.all_reduce(self.n_forward_passes_since_fired, op=dist.ReduceOp.MIN)
            return out

        def set_final_sae_metadata(self) -> None:
            all_reduce_sum(self.act_freq_scores)
            self.n_frac_active_samples *= world
            super().set_final_sae_metadata()

    return DataParallelSAETrainer


@contextlib.contextmanager
def _quiet_tqdm() -> Iterator[None]:
    """Swap the tqdm that sae-lens' trainer modules imported for a disabled one, restoring it afterwards."""
    import functools
    import importlib

    names = ("sae_lens.training.sae_trainer", "sae_lens.training.activation_scaler")
    mods = [importlib.import_module(m) for m in names]
    saved = [m.tqdm for m in mods]
    try:
        for m, t in zip(mods, saved):
            m.tqdm = functools.partial(t, disable=True)
        yield
    finally:
        for m, t in zip(mods, saved):
            m.tqdm = t


def train_sae(batches: Callable[[], Iterator[torch.Tensor]] | torch.Tensor | str | os.PathLike, *,
              d_sae: int, architecture: str = "topk", hook: str | None = None, k: int = 16,
              target_l0: float | None = None, l1_coefficient: float = 5.0, training_tokens: int = 500_000,
              batch_size: int = 1024, lr: float = 1e-3, seed: int = 0, device: str = "cpu",
              allow_incomplete: bool = False, rank: int | None = None, world: int | None = None,
              **arch_kwargs: Any) -> Any:
    """Train a sae-lens SAE on activation batches; return the inference SAE (normalisation folded in).

    batches: an [N, d] tensor, a cache directory (with `hook`), or a callable returning an iterator of [b, d]
    tensors (re-called when exhausted). Rows with more dimensions (`attn.hook_z`: heads × d_head) are flattened, so
    d_in is their product. wandb is never used; nothing is read from a hub.

    Data-parallel when world > 1 (rank/world default to interp.distributed.rank_world(); the process group must be
    initialised): `batch_size` is per rank and `training_tokens` global, so W ranks follow the trajectory of one
    process with batch W·batch_size. A cache or tensor source is split so that rank r reads its own rows of every
    global batch of the shared seeded permutation; a callable must yield this rank's batches itself. Gradients are
    averaged over ranks in parameter hooks (before sae-lens clips them), the dead-feature counters take the minimum
    over ranks, and the activation norm factor is estimated over all ranks' first batches. Every loss term of the
    three architectures as configured here is a mean over rows, so the result equals the single-process one up to
    float rounding (which long TopK runs with many dead features amplify, as any reordering of the sums does).
    """
    import tempfile

    from sae_lens import SAE, JumpReLUTrainingSAE, StandardTrainingSAE, TopKTrainingSAE
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    rank, world = data_split(rank, world)
    if world > 1:
        device = local_device(device)
    if isinstance(batches, (str, os.PathLike)):
        if hook is None:
            raise ConfigError("training from a cache needs the hook name", hint="pass hook='blocks.L.hook_...'")
        from interp.cache import open_cache

        reader = open_cache(batches, allow_incomplete=allow_incomplete)
        if hook not in reader.hooks:
            raise ConfigError(f"cache {batches} has no hook {hook}", hint=f"cached hooks: {', '.join(reader.hooks)}")

        def make_iter() -> Iterator[torch.Tensor]:
            return reader.activation_provider(hook, batch_size, seed=seed, rank=rank, world=world)
    elif isinstance(batches, torch.Tensor):
        acts = batches

        def make_iter() -> Iterator[torch.Tensor]:
            if world == 1:
                return tensor_batches(acts, batch_size, seed=seed)
            lo = rank * batch_size  # this rank's rows of each global batch
            return (b[lo:lo + batch_size] for b in tensor_batches(acts, batch_size * world, seed=seed))
    else:
        make_iter = batches

    def provider() -> Iterator[torch.Tensor]:
        while True:
            got = False
            for b in make_iter():
                got = True
                b = b.reshape(b.shape[0], -1)  # per-head hooks (attn.hook_z [n, heads, d_head]) train flattened
                for s in range(0, b.shape[0] - batch_size + 1, batch_size):
                    yield b[s:s + batch_size].float()
            if not got:
                raise ConfigError("the activation source yielded no batches", hint="check the cache / hook")

    it = provider()
    first = next(it)
    torch.manual_seed(seed)
    cfg = training_config(architecture, first.shape[1], d_sae, k=k, target_l0=target_l0,
                          l1_coefficient=l1_coefficient, **arch_kwargs)
    sae_cls = {"topk": TopKTrainingSAE, "jumprelu": JumpReLUTrainingSAE, "standard": StandardTrainingSAE}
    sae = sae_cls[architecture](cfg)
    tcfg = SAETrainerConfig(total_training_samples=_rank_samples(int(training_tokens), batch_size, world),
                            train_batch_size_samples=batch_size,
                            lr=lr, lr_end=lr / 10, lr_scheduler_name="cosineannealing", lr_warm_up_steps=0,
                            device=device, logger=LoggingConfig(log_to_wandb=False), n_batches_for_norm_estimate=20,
                            dead_feature_window=200, feature_sampling_window=500)

    def chained() -> Iterator[torch.Tensor]:
        yield first
        yield from it

    data = chained()
    trainer_cls = SAETrainer if world == 1 else _data_parallel_trainer(SAETrainer, world)
    trainer = trainer_cls(cfg=tcfg, sae=sae, data_provider=data)
    if world > 1:
        for p in sae.parameters():  # average gradients over ranks as they are computed (before clipping)
            p.register_hook(lambda g: all_reduce_sum(g.detach().clone()).div_(world))
    if cfg.normalize_activations == "expected_average_only_in":  # sae-lens skips its own estimate when set
        trainer.activation_scaler.scaling_factor = _norm_scaling_factor(
            data, cfg.d_in, tcfg.n_batches_for_norm_estimate, world, device)
    os.environ.setdefault("WANDB_MODE", "disabled")
    with _quiet_tqdm():  # sae-lens' progress bars flood logs and test output
        trained = trainer.fit().to("cpu")
    with tempfile.TemporaryDirectory() as tmp:  # training SAE -> inference SAE of the same architecture
        trained.save_inference_model(tmp)
        return SAE.load_from_disk(tmp, device=device)
