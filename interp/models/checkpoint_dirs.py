"""A user's training run as a model: a folder whose subfolders are checkpoints (`step1000/`, `checkpoint-2000/`).

Each checkpoint subfolder is a Hugging Face folder (config.json + safetensors); the step is the number in its name
(`stepN` as Pythia's revisions, `checkpoint-N` as transformers' Trainer writes them). The tokenizer may sit in the
run folder itself or in any checkpoint. `interp.models.checkpoints(run)` lists the steps and `load(run, step=N)`
loads one, so the checkpoint sweeps (massive activations) run on a private training run as on an embedded suite.
"""

from __future__ import annotations

import re
from pathlib import Path

from interp.errors import ModelNotFoundError

_STEP = re.compile(r"^(?:step|checkpoint-)(\d+)$")


def step_folders(path: str | Path) -> dict[int, Path]:
    """{step: subfolder} of a run folder (empty when `path` is not one)."""
    root = Path(path)
    if not root.is_dir() or (root / "config.json").is_file():
        return {}
    out: dict[int, Path] = {}
    for sub in root.iterdir():
        m = _STEP.match(sub.name)
        if m and (sub / "config.json").is_file():
            step = int(m.group(1))
            if step in out:
                raise ModelNotFoundError(f"{root} holds two checkpoints of step {step} ({out[step].name}, "
                                         f"{sub.name})", hint="keep one folder per step")
            out[step] = sub
    return dict(sorted(out.items()))


def is_checkpoint_dir(path: str | Path) -> bool:
    """Whether `path` is a folder of checkpoint subfolders."""
    return bool(step_folders(path))


def checkpoint_folder(path: str | Path, step: int | None) -> Path:
    """The subfolder of `step` (the last one when None); an absent step names the nearest ones."""
    folders = step_folders(path)
    steps = list(folders)
    if step is None or step == -1:
        return folders[steps[-1]]
    if step not in folders:
        near = min(steps, key=lambda s: abs(s - int(step)))
        raise ModelNotFoundError(f"{path} has no checkpoint at step {step} (nearest: {near}; {len(steps)} steps "
                                 f"from {steps[0]} to {steps[-1]})",
                                 hint=f"list them with interp.models.checkpoints('{path}')")
    return folders[int(step)]


def tokenizer_folder(path: str | Path) -> Path | None:
    """The folder holding the run's tokenizer: the run folder, else the first checkpoint that has one."""
    root = Path(path)
    names = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
    for folder in [root, *step_folders(root).values()]:
        if any((folder / n).is_file() for n in names):
            return folder
    return None
