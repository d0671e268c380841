"""Rank/world helpers over torch.distributed (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK)."""

from __future__ import annotations

import os

import torch


def rank_world() -> tuple[int, int]:
    """(rank, world size): from an initialised process group, else torchrun's environment, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def data_split(rank: int | None = None, world: int | None = None) -> tuple[int, int]:
    """The (rank, world) a data-parallel reader uses: the arguments, else rank_world(). world > 1 needs an
    initialised process group of that size, since the results are then all-reduced across it."""
    from interp.errors import ConfigError

    r0, w0 = rank_world()
    rank, world = r0 if rank is None else int(rank), w0 if world is None else int(world)
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"rank {rank} is not in a world of {world}", hint="pass 0 <= rank < world")
    if world > 1:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise ConfigError(f"a data-parallel split over {world} ranks needs torch.distributed initialised",
                              hint="call interp.distributed.init_from_env() under torchrun (or pass world=1)")
        if torch.distributed.get_world_size() != world:
            raise ConfigError(f"world={world} but the process group has {torch.distributed.get_world_size()} ranks",
                              hint="leave rank/world unset to take them from the process group")
    return rank, world


def init_from_env(device: str = "cpu") -> bool:
    """Initialise the default process group when launched by torchrun (NCCL for cuda, gloo for cpu)."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1 or not torch.distributed.is_available():
        return False
    if not torch.distributed.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        torch.distributed.init_process_group(backend=backend)
    return True


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def agree(error: BaseException | None) -> None:
    """A barrier that fails on every rank when one rank failed: raises this rank's `error`, or a CacheError naming
    the failed ranks on the others, instead of leaving them at the next barrier until the process-group timeout
    (which, across hosts, nothing else cuts short)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        if error is not None:
            raise error
        return
    from interp.errors import CacheError

    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    failed = torch.zeros(dist.get_world_size(), device=device)
    failed[dist.get_rank()] = float(error is not None)
    dist.all_reduce(failed, op=dist.ReduceOp.SUM)
    if error is not None:
        raise error
    ranks = [int(r) for r in torch.nonzero(failed.cpu()).flatten()]
    if ranks:
        raise CacheError(f"rank(s) {', '.join(map(str, ranks))} failed to start (their error is in their log); "
                         "this rank stops too", hint="fix what the failed rank reports, then rerun the same command")


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks in place (a no-op in a single process); returns it."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(x, op=torch.distributed.ReduceOp.SUM)
    return x


def local_device(device: str) -> str:
    """'cuda' becomes this rank's GPU ('cuda:LOCAL_RANK') under torchrun."""
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device
