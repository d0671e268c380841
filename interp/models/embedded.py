"""The embedded default: model suites, tokenizer and corpus shipped in the repository's data/ folder.

Layout (see data/README.md):
    data/tokenizer/                      Hugging Face tokenizer files
    data/models/<suite>/suite.json       {"steps": [...], "final_step": N, "heldout_loss": {...}, ...}
    data/models/<suite>/step<N>/         config.json + model.safetensors (GPT-NeoX, loadable by transformers)
    data/corpus/                         features.json, probes.jsonl, heldout.jsonl
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from interp.data_paths import data_dir
from interp.errors import ModelNotFoundError

DEFAULT_MODEL = "toy-pythia-4l"


def suites_dir() -> Path:
    return data_dir() / "models"


def embedded_names() -> list[str]:
    """Names of the embedded model suites (folders of data/models with a suite.json)."""
    root = suites_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "suite.json").is_file())


def is_embedded(name: str) -> bool:
    return isinstance(name, str) and (suites_dir() / name / "suite.json").is_file()


@lru_cache(maxsize=32)
def _suite_info_cached(path: str, mtime: float) -> dict:
    """suite.json, checked: an object whose "steps" (optional) are non-negative integers and whose "tokenizer"
    (optional) is a path string; anything else is one typed error naming the file."""
    try:
        info = json.loads(Path(path).read_text())
    except ValueError as e:  # JSON or UTF-8
        raise _damaged(path, f"{type(e).__name__}: {e}") from None
    if not isinstance(info, dict):
        raise _damaged(path, "not a JSON object")
    steps = info.get("steps")
    if steps is not None and not (isinstance(steps, list) and all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in steps)):
        raise _damaged(path, f'"steps" must be a list of non-negative integers, got {steps!r:.80}')
    if not isinstance(info.get("tokenizer", ""), str):
        raise _damaged(path, f'"tokenizer" must be a folder path, got {info["tokenizer"]!r:.80}')
    return info


def _damaged(path: str, why: str) -> ModelNotFoundError:
    return ModelNotFoundError(f"{path} is damaged: {why}", hint="restore it from git (data/ is versioned) or retrain "
                              "the suite: interp toy train")


def suite_info(name: str) -> dict:
    """The parsed suite.json of an embedded suite."""
    path = suites_dir() / name / "suite.json"
    if not path.is_file():
        raise ModelNotFoundError(
            f"'{name}' is not an embedded suite (known: {', '.join(embedded_names()) or 'none'})",
            hint="use one of the embedded names, a local Hugging Face folder, or a transformer-lens model name",
        )
    return _suite_info_cached(str(path), path.stat().st_mtime)


def embedded_checkpoints(name: str) -> list[int]:
    """Training steps with a stored checkpoint, ascending."""
    info = suite_info(name)
    steps = info.get("steps")
    if steps is None:
        steps = [int(p.name[4:]) for p in (suites_dir() / name).glob("step*") if p.name[4:].isdigit()]
    return sorted(int(s) for s in steps)


def embedded_checkpoint_path(name: str, step: int | None = None) -> Path:
    """Folder of one checkpoint (the final one when step is None)."""
    steps = embedded_checkpoints(name)
    if not steps:
        raise ModelNotFoundError(f"embedded suite '{name}' has no checkpoints", hint="retrain it: interp toy train")
    if step is not None and (isinstance(step, bool) or int(step) != step):
        raise ModelNotFoundError(f"checkpoint step {step!r} is not an integer", hint=f"e.g. step={steps[-1]}")
    step = steps[-1] if step is None else int(step)
    if step not in steps:
        near = min(steps, key=lambda s: abs(s - step))
        raise ModelNotFoundError(
            f"'{name}' has no checkpoint at step {step} (nearest: {near}; {len(steps)} steps from {steps[0]} to "
            f"{steps[-1]})",
            hint=f"list them with interp.models.checkpoints('{name}')",
        )
    return suites_dir() / name / f"step{step}"


def embedded_tokenizer_dir(name: str | None = None) -> Path:
    """The tokenizer folder of a suite (suite.json's "tokenizer", else data/tokenizer)."""
    if name is not None:
        rel = suite_info(name).get("tokenizer")
        if rel:
            p = Path(rel)
            if not p.is_absolute():
                cand = [suites_dir() / name / p, data_dir().parent / p, data_dir() / p]
                p = next((c for c in cand if c.is_dir()), cand[-1])
            if p.is_dir():
                return p
    return data_dir() / "tokenizer"
