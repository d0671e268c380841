"""Build the shipped corpus artifacts: tokenizer (data/tokenizer) and features/held-out/probes (data/corpus)."""

from __future__ import annotations

import argparse
from pathlib import Path

from interp.toy import corpus, tokenizer

DATA_DIR = Path(__file__).resolve().parents[2] / "data"


def build_corpus(data_dir: Path = DATA_DIR, seed: int = corpus.DEFAULT_SEED, vocab_size: int = 1024,
                 n_tokenizer_docs: int = 20_000, n_heldout: int = 2_000, per_feature: int = 250) -> dict:
    """Train the tokenizer on the first train documents, then write data/corpus/*; returns a summary."""
    data_dir = Path(data_dir)
    tok = tokenizer.train_tokenizer(corpus.train_texts(seed, n_tokenizer_docs), vocab_size)
    tokenizer.save_tokenizer(tok, data_dir / "tokenizer")
    counts = corpus.write_corpus(data_dir / "corpus", tok, seed, n_heldout, per_feature)
    return {"vocab_size": len(tok), "single_tokens": tokenizer.single_token_report(tok), "probes": counts}


def main(argv: list[str] | None = None) -> None:
    """`python -m interp.toy.build [--data DIR] [--seed N]`."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DATA_DIR)
    ap.add_argument("--seed", type=int, default=corpus.DEFAULT_SEED)
    args = ap.parse_args(argv)
    print(build_corpus(args.data, args.seed))


if __name__ == "__main__":
    main()
