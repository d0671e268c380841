"""A small synthetic latent cache with known dense latents, an SAE folder and a hostile vocabulary (browser tests).

The dense latents have at most k nonzeros per row, all multiples of 1/4 (exact in bf16, so the cache stores them
bit for bit and many values tie), so the brute-force references below can start from the dense matrix itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from interp.browser.synthetic import dense_shards, write_sparse_cache

N, D_SAE, K, D_IN, VOCAB, SEQ = 3000, 48, 6, 16, 60, 50
HOOK_LAT = "blocks.1.hook_resid_post.sae"
HOOK_X = "blocks.1.hook_resid_post"
HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "\u202eevil\u202c", " she", " he",
           "</script><script>alert(2)</script>", "&amp;", "\u2028"]
SHE, PLANTED = 3, 5  # token 3 (" she") fires latent PLANTED at the highest values


def vocab() -> list[str]:
    return HOSTILE + [f" w{i}" for i in range(VOCAB - len(HOSTILE))]


def make_data(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCAB, N)
    A = np.zeros((N, D_SAE), dtype=np.float32)
    for r in range(N):
        she = tokens[r] == SHE
        n = rng.integers(0, K if she else K + 1)  # at most K nonzeros per row, the planted one included
        ids = rng.choice([i for i in range(D_SAE) if i != PLANTED] if she else D_SAE, n, replace=False)
        A[r, ids] = rng.integers(1, 17, n) / 4.0  # 0.25 .. 4.0
        if she:
            A[r, PLANTED] = 8.0 + rng.integers(0, 5) / 4.0
    A[:, D_SAE - 1] = 0.0  # a latent that never fires
    A[1000:1500] = 0.0  # a shard (of 500 rows) where nothing fires
    X = rng.standard_normal((N, D_IN)).astype(np.float32) + A[:, :D_IN] * 0.5
    tok3 = np.stack([tokens, np.arange(N) // SEQ, np.arange(N) % SEQ], 1).astype(np.int64)
    return {"A": A, "X": X, "tokens": tok3}


def make_sae(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    W_dec = rng.standard_normal((D_SAE, D_IN)).astype(np.float32)
    W_dec[7] = W_dec[2] * 2 + 0.01 * W_dec[7]  # a near-duplicate pair for the neighbour list
    b_dec = rng.standard_normal(D_IN).astype(np.float32) * 0.1
    path.mkdir(parents=True, exist_ok=True)
    save_file({"W_dec": torch.from_numpy(W_dec), "b_dec": torch.from_numpy(b_dec),
               "W_enc": torch.from_numpy(W_dec.T.copy()), "b_enc": torch.zeros(D_SAE)},
              str(path / "sae_weights.safetensors"))
    (path / "cfg.json").write_text(json.dumps({"d_in": D_IN, "d_sae": D_SAE, "architecture": "topk", "k": K,
                                               "metadata": {"hook_name": HOOK_X}}))
    return {"W_dec": W_dec, "b_dec": b_dec}


def make_cache(path: Path, data: dict[str, np.ndarray], dense: bool = True, shard_rows: int = 500,
               csr: bool = False) -> Path:
    lat = torch.from_numpy(data["A"])
    extra = {HOOK_X: torch.from_numpy(data["X"])} if dense else {}
    return write_sparse_cache(path, dense_shards(lat, data["tokens"], K, shard_rows, extra), hook=HOOK_LAT,
                              d_sae=D_SAE, k=K, dense_shapes={HOOK_X: D_IN} if dense else None, csr=csr)


class FakeModel:
    """Just an unembedding: what the browser reads of a model."""

    def __init__(self, seed: int = 0):
        self.W_U = torch.from_numpy(np.random.default_rng(seed + 2).standard_normal((D_IN, VOCAB)).astype(np.float32))
        self.tokenizer = None


def read_chunk(path: Path):
    """The JSON payload of a data chunk `window.__interpChunk("id",{...});`."""
    text = path.read_text()
    head = "window.__interpChunk("
    assert text.startswith(head) and text.endswith(");\n"), text[:80]
    cid, payload = text[len(head):-3].split(",", 1)
    return json.loads(cid), json.loads(payload)


def value_range(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per latent (column) the histogram range the collector uses: [min(0, min of nonzeros), max of nonzeros]."""
    nz = A != 0
    lo = np.array([min(0.0, A[nz[:, j], j].min()) if nz[:, j].any() else 0.0 for j in range(A.shape[1])])
    hi = np.array([A[nz[:, j], j].max() if nz[:, j].any() else 0.0 for j in range(A.shape[1])], dtype=np.float64)
    return lo, hi


def histogram_bins(v: np.ndarray, lo: float, hi: float, n: int) -> np.ndarray:
    """The bin of each value in n equal bins over [lo, hi] (the top edge in the last bin)."""
    w = hi - lo if hi - lo > 0 else 1.0
    return np.clip(np.floor((v.astype(np.float64) - lo) / w * n).astype(np.int64), 0, n - 1)
