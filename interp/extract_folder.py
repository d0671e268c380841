"""The output folder of an extraction: what may be written there, what a resume continues from, what is cleared.

Every check here needs only the folder and the flags, so extraction runs them before the model loads (a refusal is
instant), and none changes anything except `clear`, which rank 0 runs between two barriers. Files interp did not
write are never removed, --overwrite or not.
"""

from __future__ import annotations

from pathlib import Path

from interp.cache.manifest import MANIFEST, Manifest, describe_cache, identity_mismatch
from interp.errors import CacheError


def check_out(out: Path, resume: bool, overwrite: bool) -> bool:
    """Refusals that need only the folder and the flags (run before the model loads, so that they are instant):
    --out is a file, a non-cache folder, a cache without --resume/--overwrite. Returns whether it holds a cache."""
    if out.exists() and not out.is_dir():
        raise CacheError(f"--out {out} is a file, not a folder", hint="choose an empty or new --out")
    if not out.is_dir():
        return False
    has_cache = (out / MANIFEST).is_file() or any(out.glob("manifest.rank*.json"))
    # interp's own lock and half-written temporaries (an atomic write cut short by a kill; removed after the
    # barrier below) do not make a folder "somebody else's"
    ours = lambda p: p.name.startswith(".lock") or (p.name.startswith(".") and p.name.endswith(".tmp"))  # noqa: E731
    if not has_cache and any(p for p in out.iterdir() if not ours(p)):
        # Never delete files interp did not write, --overwrite or not.
        raise CacheError(f"{out} exists, is not empty and is not an interp cache", hint="choose an empty or new --out")
    if has_cache and not resume and not overwrite:
        raise CacheError(f"{out} already holds a cache ({describe_cache(out)})",
                         hint="pass --resume to continue it (with the options that started it), --overwrite to "
                         "replace it, or another --out")
    return has_cache


def prepare(out: Path, resume: bool, overwrite: bool, identity: dict, manifest_name: str
            ) -> tuple[Manifest | None, bool]:
    """Look at the folder, changing nothing: (the manifest to resume from or None, whether --overwrite must first
    remove an existing cache). Refuses to clobber anything interp did not write."""
    has_cache = check_out(out, resume, overwrite)
    if has_cache and overwrite:
        return None, True
    # every manifest in the folder: this rank's, the merged one and other ranks' (the world size may differ from
    # the run that started it: one process resuming a torchrun cache, or 2 ranks resuming 3); done = their union
    names = dict.fromkeys([manifest_name, MANIFEST, *sorted(p.name for p in out.glob("manifest.rank*.json"))])
    found = [Manifest.load(out, n) for n in names if (out / n).is_file()]
    if not found:
        return None, False
    for m in found:
        diff = identity_mismatch(m.identity, identity)
        if diff:
            detail = "; ".join(f"{k}: {m.identity.get(k)!r} -> {identity.get(k)!r}" for k in diff[:4])
            raise CacheError(f"cannot resume {out}: the run differs from the one that started it ({detail})",
                             hint="repeat the original options, or pass --overwrite to start again")
    return union(found[0], found[1:]), False


def union(base: Manifest, others) -> Manifest:
    """`base` with every shard that one of `others` lists and it does not (shards are identified by index)."""
    listed = {s.index for s in base.shards}
    for m in others:
        for s in m.shards:
            if s.index not in listed:
                base.shards.append(s)
                listed.add(s.index)
    return base


def clear(out: Path, wipe: bool) -> None:
    """Remove half-written temporaries and, for --overwrite, the old cache's shards and manifests (rank 0 only,
    between two barriers: no rank is still inspecting the folder, and none has started writing)."""
    for p in out.iterdir():
        temporary = p.name.startswith(".") and p.name.endswith(".tmp")
        if temporary or (wipe and (p.suffix == ".npy" or p.name.startswith("manifest"))):
            p.unlink(missing_ok=True)
