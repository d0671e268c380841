"""`interp tokenize`: tokenize a text source once into a `.npy` of token blocks that `interp extract` reads.

Multi-rank extraction should start from pre-tokenized input: every rank then skips the other ranks' blocks for free
instead of tokenizing the whole stream itself (benchmarks/results/distributed_extract.md: 0.64 -> 0.91 efficiency).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def add_parser(sub) -> None:
    """Register the `tokenize` subcommand."""
    p = sub.add_parser("tokenize", help="tokenize a text source once into a .npy of token blocks (for extract)")
    p.add_argument("--model", default=None, help="whose tokenizer (default: the embedded default)")
    p.add_argument("--data", default="embedded", help="'embedded', a .txt/.jsonl/.parquet file, a folder, hf:NAME")
    p.add_argument("--text-column", default="text")
    p.add_argument("--tokens", type=int, default=None, help="number of tokens (default: the whole source)")
    p.add_argument("--ctx", type=int, default=128, help="tokens per block (extract must use the same --ctx)")
    p.add_argument("--prepend-bos", action="store_true", help="start every block with the end-of-text token")
    p.add_argument("--out", required=True, help="output .npy file")


def cmd_tokenize(a: argparse.Namespace) -> int:
    """Write `[n_blocks, ctx]` token ids (int32 when the vocabulary allows) atomically to --out."""
    from interp.errors import ConfigError
    from interp.fileio import atomic_write_bytes
    from interp.models import DEFAULT_MODEL, load_tokenizer
    from interp.sources import token_blocks

    out = Path(a.out)
    if out.suffix != ".npy":
        raise ConfigError(f"--out {out} must end in .npy", hint="interp extract reads token files by that suffix")
    tok = load_tokenizer(a.model or DEFAULT_MODEL)
    blocks = token_blocks(a.data, tok, ctx=a.ctx, n_tokens=a.tokens, text_column=a.text_column,
                          prepend_bos=a.prepend_bos).numpy()
    ids = blocks.astype(np.int32) if blocks.max(initial=0) < 2**31 else blocks
    import io

    buf = io.BytesIO()
    np.save(buf, ids, allow_pickle=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, buf.getvalue())
    print(f"wrote {out}: {ids.shape[0]} blocks x {ids.shape[1]} tokens ({ids.size:,} tokens, {ids.dtype})")
    return 0
