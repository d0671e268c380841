"""Suites as the studies see them: checkpoint steps, tokens per step, warm-up, and the held-out token blocks; plus
the loading, capture and loss helpers every study shares.

A suite is an embedded suite (data/models/<name>/suite.json), a user's run folder of checkpoint subfolders
(`step1000/`, `checkpoint-2000/`, see interp.models.checkpoint_dirs) or a transformer-lens name with hub
checkpoints. The model whose final checkpoint the methods are compared on may also be one Hugging Face folder.

Tokens per step (the trend laws' D) come from `Config.tokens_per_step` when set, else from the suite's info:
an embedded suite's suite.json, or a `suite.json` in a run folder (the same "train": {"batch", "ctx", "warmup"}
that `interp toy train` writes, or a top-level "tokens_per_step"), or, without one, the token count that
transformers' Trainer logs in the last checkpoint's trainer_state.json; else the default 8 × 256 = 2048.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from interp.errors import ConfigError

from .config import Config

DEFAULT_TOKENS_PER_STEP = 8 * 256  # the toy suites' batch × ctx


@dataclass
class SuiteData:
    """One suite: checkpoint steps, tokens per step, warm-up, and the evaluation / calibration blocks.

    A single Hugging Face folder is a suite of one checkpoint with step -1 (loaded with step=None)."""

    name: str
    steps: list[int]
    tokens_per_step: int
    warmup: int
    eval_blocks: torch.Tensor
    calib_blocks: torch.Tensor

    def post_warmup(self) -> list[int]:
        return [s for s in self.steps if s >= max(self.warmup, 1)]


def suite_info(name: str) -> dict:
    """The suite's own description: suite.json of an embedded suite or of a run folder ({} when there is none)."""
    from interp.models import embedded_names
    from interp.models import suite_info as embedded_info
    from interp.models.checkpoint_dirs import is_checkpoint_dir

    if name in embedded_names():
        return embedded_info(name)
    path = Path(name) / "suite.json"
    if not is_checkpoint_dir(name):
        return {}
    if not path.is_file():
        return trainer_state_info(name)
    try:
        info = json.loads(path.read_text())
    except ValueError as e:
        raise ConfigError(f"{path} is not JSON ({type(e).__name__})", hint="fix it or remove it") from None
    return info if isinstance(info, dict) else {}


def trainer_state_info(name: str) -> dict:
    """{"tokens_per_step": ...} from the last checkpoint's trainer_state.json (transformers' Trainer), when its log
    counts input tokens (`include_num_input_tokens_seen`): num_input_tokens_seen / step of the last such entry;
    {} otherwise. The file is JSON; training_args.bin (a pickle) is never read."""
    from interp.models.checkpoint_dirs import checkpoint_folder

    state = checkpoint_folder(name, None) / "trainer_state.json"
    if not state.is_file():
        return {}
    try:
        log = json.loads(state.read_text()).get("log_history", [])
    except (ValueError, AttributeError):
        return {}
    seen = [e for e in log if isinstance(e, dict) and e.get("num_input_tokens_seen") and e.get("step")]
    if not seen:
        return {}
    last = seen[-1]
    return {"tokens_per_step": round(float(last["num_input_tokens_seen"]) / float(last["step"])),
            "tokens_per_step_source": str(state)}


def tokens_per_step(cfg: Config, info: dict) -> int:
    """Config's value when set, else the info's "tokens_per_step", else its train batch × ctx, else 2048."""
    if cfg.tokens_per_step > 0:
        return int(cfg.tokens_per_step)
    if "tokens_per_step" in info:
        return int(info["tokens_per_step"])
    train = info.get("train", {})
    if "batch" in train or "ctx" in train:
        return int(train.get("batch", 8)) * int(train.get("ctx", 256))
    return DEFAULT_TOKENS_PER_STEP


def steps_of(name: str, *, single_ok: bool) -> list[int]:
    """The suite's checkpoint steps; a single Hugging Face folder is [-1] where `single_ok`, else refused."""
    from interp.models import checkpoints
    from interp.models.checkpoint_dirs import is_checkpoint_dir
    from interp.models.hf_local import is_hf_folder

    if is_hf_folder(name) and not is_checkpoint_dir(name):
        if single_ok:
            return [-1]
        raise ConfigError(f"{name} is one model, not a suite of checkpoints",
                          hint="pass a run folder of step<N>/ checkpoint subfolders (or an embedded suite) in suites")
    return checkpoints(name)


def load_suite(cfg: Config, name: str, *, single_ok: bool = False) -> SuiteData:
    """Steps, tokens per step, warm-up and the evaluation / calibration blocks of suite `name`."""
    from interp.models import load_tokenizer
    from interp.sources import token_blocks

    steps = steps_of(name, single_ok=single_ok)
    info = suite_info(name)
    train = info.get("train", {})
    blocks = token_blocks(cfg.data, load_tokenizer(name), ctx=cfg.ctx, n_tokens=cfg.n_tokens + cfg.calib_tokens)
    n_eval = max(1, cfg.n_tokens // cfg.ctx)
    warm = cfg.warmup_steps if cfg.warmup_steps >= 0 else int(train.get("warmup", 0))
    return SuiteData(name, steps, tokens_per_step(cfg, info), warm, blocks[:n_eval], blocks[n_eval:])


def load_checkpoint(name: str, step: int, device: str) -> torch.nn.Module:
    """The checkpoint of `step` (step -1: the model itself, a single folder or the final checkpoint)."""
    from interp.models import load

    return load(name, step=None if step < 0 else step, device=device)


def capture_acts(model: torch.nn.Module, blocks: torch.Tensor, hooks: list[str], batch: int) -> dict[str, torch.Tensor]:
    """The hooks' activations [n_blocks, ctx, ...] in float64."""
    from interp.capture import capture

    return capture(model, blocks, hooks=hooks, dtype=torch.float64, batch_size=batch)


def mean_loss(model: torch.nn.Module, blocks: torch.Tensor, edits: dict, batch: int) -> float:
    """Mean next-token loss over every position of `blocks` under `edits` (summed in float64)."""
    from interp.intervene import per_token_nll

    total, n = 0.0, 0
    with torch.inference_mode():
        for s in range(0, len(blocks), batch):
            nll = per_token_nll(model, blocks[s:s + batch], edits).double()
            total, n = total + float(nll.sum()), n + nll.numel()
    return total / n
