"""`interp cache info` and `interp cache verify`: read a cache folder without the model."""

from __future__ import annotations

from interp.cache import open_cache
from interp.cache.manifest import Manifest


def cache_info(path: str) -> int:
    """Print the manifest summary: model, tokens, hooks with shapes, shards, size, provenance."""
    m = Manifest.load(path)
    ident, env = m.identity, m.environment  # objects; the manifest loader checked n_blocks/ctx are integers
    total = sum(f["bytes"] for s in m.shards for f in s.files.values())
    print(f"cache       {path}  ({m.status})")
    print(f"model       {ident.get('model')!s}  (source {ident.get('model_source')!s}, "
          f"checkpoint {ident.get('checkpoint')!s})")
    print(f"tokens      {ident.get('n_blocks', 0) * ident.get('ctx', 0):,} in {ident.get('n_blocks')} blocks of "
          f"{ident.get('ctx')} from {ident.get('data')!s}; positions {ident.get('positions')!s}")
    print(f"rows        {m.n_rows:,} in {len(m.shards)} shards, {total / 2**20:.1f} MiB")
    for hook, spec in m.hooks.items():
        print(f"  {hook:<40} {spec['format']:>6} {spec['dtype']:>9} {tuple(spec['shape'])}")
    versions = env.get("versions") if isinstance(env.get("versions"), dict) else {}
    print("written by  " + ", ".join(f"{k} {v}" for k, v in versions.items() if k in ("interp", "torch",
                                                                                      "transformer-lens")))
    return 0


def cache_verify(path: str, repair: bool = False) -> int:
    """Check every shard file; exit 1 when any is missing, truncated or altered.

    --repair unlists the bad shards (so that `extract --resume` redoes them) and checks the cache again: exit 0 when
    what is left listed is sound (the repair worked), 1 when problems remain."""
    reader = open_cache(path, verify="none", allow_incomplete=True)
    bad = reader.verify_shards()
    problems = [line for lines in bad.values() for line in lines]
    for line in problems:
        print(f"BAD  {line}")
    if not problems:
        print(f"ok   {len(reader.listed)} shards, {sum(len(s.files) for s in reader.listed)} files match the manifest")
        return 0
    if repair:
        m = reader.manifest
        m.shards = [s for s in m.shards if s.index not in bad]
        m.status = "in_progress"
        m.save(reader.path)
        print(f"unlisted {len(bad)} bad shard(s); run interp extract with the same options and --resume to redo them")
        left = open_cache(path, verify="none", allow_incomplete=True).verify_all()
        for line in left:
            print(f"BAD  {line} (after the repair)")
        return 1 if left else 0
    return 1
