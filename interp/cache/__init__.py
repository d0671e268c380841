"""The on-disk activation cache: manifest + shards + token sidecar (see interp.cache.manifest for the layout)."""

from interp.cache.manifest import Manifest
from interp.cache.reader import CacheReader, open_cache

__all__ = ["CacheReader", "Manifest", "open_cache"]
