"""Write the static site: index.html plus data chunks (`data/<id>.js` calling `window.__interpChunk(id, {...})`).

    data/meta.js              sizes, names, notes
    data/index/cNNNNN.js      index columns of `index_chunk` latents (density, mean, max, top token, sparkline)
    data/latents/cNNNNN.js    everything about `latent_chunk` latents (contexts, histogram, weights)
    data/search/bNNN.js       normalised token -> latents whose top contexts fire on it, bucketed by FNV-1a

Chunks are written one at a time, so writing holds one chunk's contexts beside the collected statistics; the search
index holds at most d_sae · k_top entries. JSON is ASCII-only (`ensure_ascii`), so no byte of a token can end the
script or confuse the JS parser.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from interp.browser.assets import page
from interp.browser.collect import LatentData
from interp.browser.contexts import contexts
from interp.errors import ConfigError
from interp.fileio import atomic_write_bytes

SPARK_BINS = 16
N_BUCKETS = 64
MARKER = "data/meta.js"


def search_key(token: str) -> str:
    """What the search box matches: the token's visible string, trimmed and lower-cased."""
    return token.strip().lower()


def bucket(key: str, n: int = N_BUCKETS) -> int:
    """FNV-1a over UTF-16 code units, as the page computes it (`bucket` in the app script)."""
    h = 0x811C9DC5
    units = key.encode("utf-16-le")
    for i in range(0, len(units), 2):
        h ^= units[i] | (units[i + 1] << 8)
        h = (h * 16777619) & 0xFFFFFFFF
    return h % n


def _num(x: Any, nd: int = 6) -> float | None:
    x = float(x)
    return None if not np.isfinite(x) else round(x, nd)


@dataclass
class Extras:
    """Weight-derived columns and notes beside the collected statistics."""

    neighbours: tuple[np.ndarray, np.ndarray]  # ids, cosines [d, n]
    logits: dict[str, np.ndarray] | None = None  # pos_ids/pos/neg_ids/neg [d, n]
    notes: dict[str, str] = field(default_factory=dict)  # "logit", "err": why a section is missing
    info: dict[str, Any] = field(default_factory=dict)  # title, subtitle and build parameters


def _chunk(path: Path, cid: str, data: Any) -> None:
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    atomic_write_bytes(path, f"window.__interpChunk({json.dumps(cid)},{text});\n".encode())


def prepare_out(out: Path) -> None:
    """Refuse a non-empty folder that is not a browser site; clear an old site's data chunks."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file", hint="pass a folder for the site")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ConfigError(f"{out} is not empty and holds no latent browser", hint="choose a new or empty folder")
    for sub in ("index", "latents", "search"):
        shutil.rmtree(out / "data" / sub, ignore_errors=True)
    (out / "data").mkdir(parents=True, exist_ok=True)
    for sub in ("index", "latents", "search"):
        (out / "data" / sub).mkdir()


def spark(hist: np.ndarray) -> list[list[int]]:
    """Histograms summed into SPARK_BINS groups (n_bins must be a multiple, else the last group takes the rest)."""
    groups = np.array_split(np.arange(hist.shape[1]), min(SPARK_BINS, hist.shape[1]))
    return np.stack([hist[:, g].sum(1) for g in groups], 1).tolist()


def latent_record(data: LatentData, ex: Extras, j: int, top: list[dict], samples: list[list[dict]],
                  names: Callable) -> dict:
    """Everything the latent view shows of latent j (contexts already gathered)."""
    quantiles = []
    for q in range(data.sample_rows.shape[1]):
        rng = data.quantile_range(j, q)
        n = int(data.hist[j][data.qbin[j] == q].sum())
        quantiles.append({"lo": _num(rng[0]) if rng else None, "hi": _num(rng[1]) if rng else None, "n": n,
                          "samples": samples[q]})
    rec = {"count": int(data.count[j]), "density": _num(data.density[j], 8), "mean": _num(data.mean[j]),
           "max": _num(data.hi[j]) if data.count[j] else None,
           "hist": {"lo": _num(data.lo[j]), "hi": _num(data.hi[j]), "counts": data.hist[j].tolist(),
                    "qbin": data.qbin[j].tolist()},
           "top": top, "quantiles": quantiles,
           "neighbours": [[int(i), _num(c, 4)] for i, c in zip(ex.neighbours[0][j], ex.neighbours[1][j])],
           "err_corr": None if data.err_corr is None else _num(data.err_corr[j], 4), "logits": None}
    if ex.logits is not None:
        rec["logits"] = {s: [[t, _num(v, 4)] for t, v in zip(names(ex.logits[f"{s}_ids"][j]), ex.logits[s][j])]
                         for s in ("pos", "neg")}
    return rec


def write_site(out: str | Path, reader: Any, hook: str, data: LatentData, ex: Extras, names: Callable, *,
               left: int = 8, right: int = 4, latent_chunk: int = 64, index_chunk: int = 4096) -> Path:
    """Write index.html and every data chunk into `out`; returns the index.html path."""
    out = Path(out)
    prepare_out(out)
    d = data.d_sae
    search: dict[str, set[int]] = {}
    top_token = [""] * d
    for a in range(0, d, latent_chunk):
        js = range(a, min(a + latent_chunk, d))
        centers, lats, slots = [], [], []  # slot: (latent, "top" | quantile index)
        for j in js:
            for r in data.top_rows[j][data.top_rows[j] >= 0]:
                centers.append(r), lats.append(j), slots.append((j, -1))
            for q in range(data.sample_rows.shape[1]):
                for r in data.sample_rows[j, q][data.sample_rows[j, q] >= 0]:
                    centers.append(r), lats.append(j), slots.append((j, q))
        ctx = contexts(reader, hook, np.array(centers, dtype=np.int64), np.array(lats, dtype=np.int64), names,
                       left, right)
        by: dict[int, tuple[list, list[list]]] = {j: ([], [[] for _ in range(data.sample_rows.shape[1])]) for j in js}
        for (j, q), c in zip(slots, ctx):
            (by[j][0] if q < 0 else by[j][1][q]).append(c)
        records = {}
        for j in js:
            top, samples = by[j]
            for c in top:
                search.setdefault(search_key(c["t"][c["c"]]), set()).add(j)
            top_token[j] = top[0]["t"][top[0]["c"]] if top else ""
            records[str(j)] = latent_record(data, ex, j, top, samples, names)
        _chunk(out / "data" / "latents" / f"c{a // latent_chunk:05d}.js", f"latents/c{a // latent_chunk:05d}", records)
    sparks, mean, dens = spark(data.hist), data.mean, data.density
    for c, a in enumerate(range(0, d, index_chunk)):
        b = min(a + index_chunk, d)
        cols = {"id": list(range(a, b)), "density": [_num(x, 8) for x in dens[a:b]],
                "mean": [_num(x) for x in mean[a:b]],
                "max": [_num(data.hi[j]) if data.count[j] else None for j in range(a, b)],
                "top": top_token[a:b], "spark": sparks[a:b]}
        if data.err_corr is not None:
            cols["err"] = [_num(x, 4) for x in data.err_corr[a:b]]
        _chunk(out / "data" / "index" / f"c{c:05d}.js", f"index/c{c:05d}", cols)
    buckets: dict[int, dict[str, list[int]]] = {b: {} for b in range(N_BUCKETS)}
    for k, v in search.items():
        buckets[bucket(k)][k] = sorted(v)
    for b, entries in buckets.items():
        _chunk(out / "data" / "search" / f"b{b:03d}.js", f"search/b{b:03d}", entries)
    meta = {"n_latents": d, "n_rows": data.n_rows, "latent_chunk": latent_chunk, "index_chunk": index_chunk,
            "n_index_chunks": (d + index_chunk - 1) // index_chunk, "n_buckets": N_BUCKETS,
            "has_err": data.err_corr is not None, "err_note": ex.notes.get("err", ""),
            "err_label": ex.notes.get("err_label", "the SAE-error norm"),
            "logit_note": ex.notes.get("logit", ""), **ex.info}
    _chunk(out / MARKER, "meta", meta)
    index = out / "index.html"
    atomic_write_bytes(index, page(json.dumps(meta, sort_keys=True)).encode())
    return index
