"""Token contexts around example rows, and token strings made safe to show (visible control and bidi characters).

A context of row r is the rows r − left … r + right that belong to r's sequence (the token sidecar's sequence id;
rows of a sequence are consecutive in a cache), each with its token and the latent's activation there (0 when off).
Only the asked rows leave the cache's memory maps (`gather_sparse`, `CacheReader.token_rows`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from interp.cache.sparse_formats import gather_sparse

# invisible characters that reorder or hide text: bidi embeddings/overrides/isolates, marks, zero-width characters
_BIDI = {0x061C, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F),
         *range(0x2066, 0x206A), 0xFEFF}
_NAMED = {"\n": "\u23ce", "\t": "\u21e5", "\r": "\u240d"}


def visible(text: str) -> str:
    """`text` with newlines/tabs as symbols and every other control, format or bidi character as ⟨U+XXXX⟩, so a
    token can neither reorder the text around it nor hide; markup stays text because pages insert it as text."""
    out = []
    for ch in text:
        if ch in _NAMED:
            out.append(_NAMED[ch])
        elif ord(ch) in _BIDI or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            out.append(f"\u27e8U+{ord(ch):04X}\u27e9")
        else:
            out.append(ch)
    return "".join(out)


def token_namer(tokenizer: Any | None) -> Callable[[np.ndarray], list[str]]:
    """Token ids -> visible strings: `tokenizer.decode([id])` (an HF tokenizer), a callable, a list/dict vocabulary,
    or `⟨id⟩` without one. Results are memoised per id."""
    memo: dict[int, str] = {}

    def one(i: int) -> str:
        if tokenizer is None:
            raw = f"\u27e8{i}\u27e9"
        elif isinstance(tokenizer, (list, tuple, dict)):
            raw = str(tokenizer[i]) if (i in tokenizer if isinstance(tokenizer, dict) else 0 <= i < len(tokenizer)) \
                else f"\u27e8{i}\u27e9"
        elif callable(tokenizer) and not hasattr(tokenizer, "decode"):
            raw = str(tokenizer(i))
        else:
            raw = tokenizer.decode([i])
        return visible(raw)

    def names(ids: np.ndarray) -> list[str]:
        out = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if i not in memo:
                memo[i] = one(int(i))
            out.append(memo[i])
        return out

    return names


def latent_values(reader: Any, hook: str, rows: np.ndarray, latents: np.ndarray) -> np.ndarray:
    """float32 activation of latent `latents[i]` at row `rows[i]` (0 where it is off): one gathered sparse row per
    query, matched against its latent (O(queries · k), no sort)."""
    if rows.size == 0:
        return np.zeros(0, dtype=np.float32)
    s = gather_sparse(reader, hook, rows)
    want = torch.from_numpy(np.asarray(latents, dtype=np.int64))
    erow = s.row_ids()
    hit = s.flat_idx().long() == want[erow]
    out = torch.zeros(len(rows), dtype=torch.float32)
    out.index_add_(0, erow[hit], s.flat_val()[hit].float())
    return out.numpy()


def windows(reader: Any, centers: np.ndarray, left: int, right: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each center row: window rows `[m, left+1+right]` (−1 outside its sequence or the cache), the token ids
    there (−1 likewise) and the centers' (sequence, position) `[m, 2]`."""
    centers = np.asarray(centers, dtype=np.int64)
    offs = np.arange(-left, right + 1)
    rows = centers[:, None] + offs[None, :]
    inside = (rows >= 0) & (rows < reader.n_rows)
    flat = np.where(inside, rows, 0).reshape(-1)
    toks = reader.token_rows(flat).reshape(rows.shape + (3,))
    seq_c = toks[:, left, 1]
    ok = inside & (toks[:, :, 1] == seq_c[:, None])
    return np.where(ok, rows, -1), np.where(ok, toks[:, :, 0], -1), toks[:, left, 1:3]


def contexts(reader: Any, hook: str, centers: np.ndarray, latents: np.ndarray, names: Callable,
             left: int = 8, right: int = 4) -> list[dict]:
    """One dict per (center row, latent): tokens `t`, activations `a`, index of the center `c`, row, seq, pos."""
    if len(centers) == 0:
        return []
    wrows, wtoks, seqpos = windows(reader, centers, left, right)
    lat = np.repeat(np.asarray(latents, dtype=np.int64), wrows.shape[1])
    ok = wrows.reshape(-1) >= 0
    acts = np.zeros(wrows.size, dtype=np.float32)
    acts[ok] = latent_values(reader, hook, wrows.reshape(-1)[ok], lat[ok])
    acts = acts.reshape(wrows.shape)
    out = []
    for i in range(len(centers)):
        keep = np.nonzero(wrows[i] >= 0)[0]
        out.append({"row": int(centers[i]), "seq": int(seqpos[i, 0]), "pos": int(seqpos[i, 1]),
                    "c": int(np.searchsorted(keep, left)), "t": names(wtoks[i, keep]),
                    "a": [round(float(x), 4) for x in acts[i, keep]]})
    return out
