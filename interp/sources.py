"""Token sources: text, folders, jsonl/parquet, in-memory lists, HF datasets -> fixed-length token blocks.

Documents are tokenized one by one, separated by the tokenizer's end-of-text token (as Pythia's training data
is), and cut into blocks of `ctx` tokens, each wrapped in the special tokens the tokenizer adds to a sequence
(BOS, or [CLS] ... [SEP]; none for the embedded default); the last partial block is dropped. The order is
deterministic, so a source plus (tokenizer, ctx, n_tokens) always yields the same blocks, and `source_hash`
fingerprints them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from interp.errors import ConfigError, DataSourceError

EMBEDDED = "embedded"
SPECIALS_ATTR = "interp_block_specials"  # (prefix ids, suffix ids) set on a tokenizer whose own answer misleads


def _read_utf8(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataSourceError(f"{path} is not UTF-8 text (invalid byte at offset {e.start})",
                              hint="convert it, e.g. iconv -f latin1 -t utf-8") from None


def _jsonl_texts(path: Path, column: str) -> Iterator[str]:
    """Rows of a jsonl file, streamed line by line (the file is never read whole)."""
    with path.open(encoding="utf-8", errors="strict") as f:
        lineno = 0
        while True:
            try:
                line = f.readline()
            except UnicodeDecodeError as e:
                raise DataSourceError(f"{path} is not UTF-8 text (invalid byte {e.object[e.start]:#x} after line "
                                      f"{lineno})",
                                      hint="convert it, e.g. iconv -f latin1 -t utf-8") from None
            if not line:
                return
            lineno += 1
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError) as e:  # JSONDecodeError, a 5000-digit number, deep nesting
                why = e.msg if isinstance(e, json.JSONDecodeError) else type(e).__name__
                raise DataSourceError(f"{path}:{lineno} is not valid JSON ({why})",
                                      hint="one JSON object per line") from None
            if not isinstance(row, dict) or column not in row:
                fields = ", ".join(row) if isinstance(row, dict) else type(row).__name__
                raise DataSourceError(f"{path}:{lineno} has no '{column}' field (fields: {fields})",
                                      hint="choose the text column with --text-column")
            yield str(row[column])


def _parquet_texts(path: Path, column: str) -> Iterator[str]:
    import pyarrow
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
        names = table.schema_arrow.names
        if column not in names:
            raise DataSourceError(f"{path} has no column '{column}' (columns: {', '.join(names)})",
                                  hint="choose the text column with --text-column")
        for batch in table.iter_batches(columns=[column]):
            yield from (str(t) for t in batch.column(0).to_pylist())
    except (pyarrow.ArrowException, OSError) as e:
        why = (str(e).splitlines() or [type(e).__name__])[0]
        raise DataSourceError(f"{path} is not a readable parquet file ({why})",
                              hint="rewrite it with pyarrow, or pass jsonl/text") from None


def _file_texts(path: Path, column: str) -> Iterator[str]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        yield from _jsonl_texts(path, column)
    elif suffix == ".parquet":
        yield from _parquet_texts(path, column)
    else:
        yield _read_utf8(path)


def embedded_corpus_path() -> Path:
    from interp.data_paths import data_dir

    return data_dir() / "corpus" / "heldout.jsonl"


def iter_texts(source: str | Path | Sequence[str], text_column: str = "text") -> Iterator[str]:
    """Documents of a source, in a fixed order.

    source: "embedded" (the embedded held-out corpus), a text/jsonl/parquet file, a folder of such files
    (sorted, recursive), a list of strings, or "hf:NAME[:SPLIT]" for a Hugging Face dataset (needs a hub).
    """
    if isinstance(source, (list, tuple)):
        yield from (str(t) for t in source)
        return
    text = str(source)
    if text == EMBEDDED:
        path = embedded_corpus_path()
        if not path.is_file():
            raise DataSourceError(f"the embedded corpus {path} is missing", hint="regenerate it: interp toy corpus")
        yield from _jsonl_texts(path, "text")
        return
    if text.startswith("hf:"):
        yield from _hf_texts(text[3:], text_column)
        return
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in
                       (".txt", ".md", ".jsonl", ".json", ".parquet", ".py", ".c", ".text", ""))
        if not files:
            raise DataSourceError(f"folder {path} holds no text, jsonl or parquet files", hint="point at the files")
        for f in files:
            yield from _file_texts(f, text_column)
        return
    if path.is_file():
        yield from _file_texts(path, text_column)
        return
    raise DataSourceError(f"token source '{text}' is not a file, folder, 'embedded' or 'hf:NAME'",
                          hint="pass --data embedded, a .txt/.jsonl/.parquet file or a folder of them")


def _hf_texts(spec: str, column: str) -> Iterator[str]:
    name, _, split = spec.partition(":")
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split or "train", streaming=True)
    except Exception as e:  # offline, unknown name, ...
        raise DataSourceError(f"Hugging Face dataset '{name}' could not be opened ({type(e).__name__})",
                              hint="no hub is reachable here: export it to jsonl/parquet and pass the file") from e
    for row in ds:
        yield str(row[column])


def tokenize_stream(texts: Iterable[str], tokenizer, separate: bool = True, chunk: int = 64) -> Iterator[list[int]]:
    """Token ids per document, each preceded by the end-of-text token (Pythia's document separator) unless the
    document already starts with it (the embedded corpus writes it literally). Documents are encoded `chunk` at a
    time (one call into the fast tokenizer per chunk instead of one per document)."""
    eos = getattr(tokenizer, "eos_token_id", None)
    batch: list[str] = []

    def flush() -> Iterator[list[int]]:
        try:
            encoded = tokenizer(batch, add_special_tokens=False)["input_ids"]
        except TypeError:  # a fast tokenizer refuses str with lone surrogates (e.g. "\ud800" escapes in JSON)
            for doc in batch:
                try:
                    doc.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise DataSourceError(f"a document holds {doc[e.start]!r} at character {e.start}, which is not "
                                          "valid Unicode text", hint="remove lone surrogates from the source") from None
            raise
        for ids in encoded:
            if separate and eos is not None and ids[:1] != [eos]:
                ids = [eos] + ids
            yield ids
        batch.clear()

    for doc in texts:
        batch.append(doc)
        if len(batch) >= chunk:
            yield from flush()
    if batch:
        yield from flush()


def iter_blocks(source, tokenizer, ctx: int = 128, max_blocks: int | None = None, text_column: str = "text",
                prepend_bos: bool = False) -> Iterator[list[int] | np.ndarray]:
    """Consecutive blocks of `ctx` token ids, streamed (memory does not grow with the source's size): lists of
    ints from text, int64 numpy rows from a pre-tokenized `.npy` (`blocks_tensor` stacks either).

    Text blocks follow the tokenizer's own convention (`block_specials`): a tokenizer that adds BOS (Llama) starts
    every block with it, a BERT tokenizer wraps it as [CLS] ... [SEP]; the rest of the block is corpus tokens.
    prepend_bos puts the BOS (else end-of-text) token at position 0 of every block where the tokenizer adds no
    prefix itself (the Pythia convention for a fresh context). Token files are taken as they are.
    """
    _check_ctx(ctx)
    if _is_token_file(source):
        file = TokenFile(Path(source), ctx, prepend_bos, tokenizer)
        n = file.n_blocks if max_blocks is None else min(file.n_blocks, max_blocks)
        for start in range(0, n, 1024):  # rows of 1024-block reads: one numpy call per read, not per block
            yield from file.blocks(start, min(start + 1024, n))
        return
    prefix, suffix = block_specials(tokenizer, prepend_bos)
    body = ctx - len(prefix) - len(suffix)
    if body < 1:
        raise DataSourceError(f"ctx={ctx} leaves no room for text between the special tokens {prefix} ... {suffix}",
                              hint=f"pass a ctx of at least {len(prefix) + len(suffix) + 1}")
    buf: list[int] = []
    n = 0
    for ids in tokenize_stream(iter_texts(source, text_column), tokenizer):
        buf.extend(ids)
        while len(buf) >= body:
            yield prefix + buf[:body] + suffix
            del buf[:body]
            n += 1
            if max_blocks is not None and n >= max_blocks:
                return


def block_specials(tokenizer, prepend_bos: bool = False) -> tuple[list[int], list[int]]:
    """(prefix, suffix): the special token ids that start and end every text block.

    They are what the tokenizer adds around one sequence with `add_special_tokens=True` (nothing for GPT-2 and
    Pythia tokenizers, `[BOS]` for Llama's, `[CLS]` and `[SEP]` for BERT's); prepend_bos adds the BOS where the
    tokenizer adds no prefix. A tokenizer marked with `SPECIALS_ATTR` answers with the mark: transformer-lens
    swaps in a BOS-adding copy of every tokenizer, so interp marks that copy with the original's convention.
    """
    prefix: list[int] = []
    suffix: list[int] = []
    known = getattr(tokenizer, SPECIALS_ATTR, None)
    if known is not None:
        prefix, suffix = list(known[0]), list(known[1])
        marked = plain = []
    else:
        marked, plain = _with_and_without_specials(tokenizer)
    for i in range(len(marked) - len(plain) + 1):
        if plain and marked[i: i + len(plain)] == plain:
            prefix, suffix = marked[:i], marked[i + len(plain):]
            break
    if prepend_bos and not prefix:
        prefix = [_bos_id(tokenizer)]
    return [int(t) for t in prefix], [int(t) for t in suffix]


def _with_and_without_specials(tokenizer) -> tuple[list[int], list[int]]:
    try:
        marked = list(tokenizer("a", add_special_tokens=True)["input_ids"])
        plain = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    except (TypeError, KeyError, ValueError, AttributeError):  # a minimal tokenizer: it adds nothing
        return [], []
    return marked, plain


def added_specials(source, tokenizer, prepend_bos: bool = False) -> dict | None:
    """`{"prefix": [...], "suffix": [...]}` when text blocks of `source` carry special tokens of the tokenizer's
    convention beyond --prepend-bos (for manifests), else None (token files are taken as they are)."""
    if _is_token_file(source):
        return None
    prefix, suffix = block_specials(tokenizer, prepend_bos)
    if (prefix, suffix) == (([_bos_id(tokenizer)] if prepend_bos else []), []):
        return None
    return {"prefix": prefix, "suffix": suffix}


def _check_ctx(ctx: int) -> None:
    if ctx < 2:
        raise DataSourceError(f"ctx must be at least 2, got {ctx}", hint="pass --ctx 128")


def _is_token_file(source) -> bool:
    return isinstance(source, (str, Path)) and str(source).endswith(".npy")


def _bos_id(tokenizer) -> int:
    """The tokenizer's BOS id, else its EOS id (Pythia's convention), else 0; an id of 0 is a real id."""
    for attr in ("bos_token_id", "eos_token_id"):
        if (tid := getattr(tokenizer, attr, None)) is not None:
            return int(tid)
    return 0


class TokenFile:
    """A pre-tokenized `.npy` of token ids, 1-D (cut into blocks of ctx) or 2-D `[n, ctx]`, read by block range.

    The file is memory-mapped but sliced as a plain ndarray: slicing an `np.memmap` costs time proportional to the
    file's size per slice (its `__array_finalize__`), which made a walk over all blocks quadratic.
    """

    def __init__(self, path: Path, ctx: int, prepend_bos: bool, tokenizer) -> None:
        if not path.is_file():
            raise DataSourceError(f"token file {path} does not exist", hint="write it with numpy.save")
        try:
            ids = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - a hostile header raises ValueError, EOFError, SyntaxError, ...
            raise DataSourceError(f"{path} is not a readable .npy array of token ids ({type(e).__name__})",
                                  hint="write it with numpy.save(path, ids) (no pickled objects)") from None
        if not isinstance(ids, np.ndarray) or ids.dtype.kind not in "iu":
            raise DataSourceError(f"{path} holds {getattr(ids, 'dtype', type(ids).__name__)}, not integer token "
                                  "ids", hint="save int32/int64 ids")
        vocab = len(tokenizer) if hasattr(tokenizer, "__len__") else None
        if ids.size and (int(ids.min()) < 0 or (vocab is not None and int(ids.max()) >= vocab)):
            raise DataSourceError(f"{path} holds token ids outside [0, {vocab}) (min {int(ids.min())}, "
                                  f"max {int(ids.max())})", hint="tokenize with the model's tokenizer")
        if ids.ndim == 2 and ids.shape[1] != ctx:
            raise DataSourceError(f"{path} holds blocks of {ids.shape[1]} tokens, --ctx is {ctx}",
                                  hint=f"pass --ctx {ids.shape[1]}")
        self.flat = np.asarray(ids).reshape(-1)  # a plain ndarray view of the map (see the class docstring)
        self.body = ctx - 1 if prepend_bos else ctx
        self.bos = _bos_id(tokenizer) if prepend_bos else None
        self.n_blocks = len(self.flat) // self.body

    def blocks(self, start: int, stop: int) -> np.ndarray:
        """int64 `[stop - start, ctx]` (clipped to the file's blocks), BOS first in each row if asked for."""
        stop = min(stop, self.n_blocks)
        rows = self.flat[start * self.body:stop * self.body].astype(np.int64).reshape(-1, self.body)
        if self.bos is None:
            return rows
        return np.concatenate((np.full((len(rows), 1), self.bos, dtype=np.int64), rows), axis=1)


class BlockReader:
    """The blocks of a source in order, a run at a time: `take(n)` returns the next n blocks as a LongTensor
    `[m, ctx]` (m < n only where the source ends), `skip(n)` passes over n blocks and returns how many it passed.

    A pre-tokenized `.npy` is random access, so skipped blocks are never read: under torchrun each rank reads
    only its own shards. Text is tokenized in order, so skipping still tokenizes.
    """

    def __init__(self, source, tokenizer, ctx: int, max_blocks: int, text_column: str = "text",
                 prepend_bos: bool = False) -> None:
        _check_ctx(ctx)
        self.ctx, self.max_blocks, self.position = ctx, max_blocks, 0
        self.file = TokenFile(Path(source), ctx, prepend_bos, tokenizer) if _is_token_file(source) else None
        self._stream = None if self.file else iter_blocks(source, tokenizer, ctx, max_blocks, text_column,
                                                          prepend_bos)

    @property
    def available(self) -> int | None:
        """Blocks the source holds (up to max_blocks), known up front for a token file; None for text."""
        return None if self.file is None else min(self.file.n_blocks, self.max_blocks)

    def take(self, n: int) -> torch.Tensor:
        stop = min(self.position + n, self.max_blocks)
        if self.file is not None:
            rows = torch.from_numpy(self.file.blocks(self.position, stop))
        else:
            got = list(itertools.islice(self._stream, max(0, stop - self.position)))
            rows = blocks_tensor(got) if got else torch.empty((0, self.ctx), dtype=torch.long)
        self.position += len(rows)
        return rows

    def skip(self, n: int) -> int:
        stop = min(self.position + n, self.max_blocks)
        if self.file is not None:
            passed = max(0, min(stop, self.file.n_blocks) - self.position)
        else:
            passed = sum(1 for _ in itertools.islice(self._stream, max(0, stop - self.position)))
        self.position += passed
        return passed


def token_blocks(source, tokenizer, ctx: int = 128, n_tokens: int | None = None, text_column: str = "text",
                 prepend_bos: bool = False) -> torch.Tensor:
    """LongTensor `[n_blocks, ctx]` of consecutive tokens from the source (n_tokens // ctx blocks, or all).

    n_tokens must cover at least one block: a smaller or non-positive size is a ConfigError, not a silent block.
    """
    _check_ctx(ctx)
    if n_tokens is not None and n_tokens < ctx:
        what = "must be positive" if n_tokens <= 0 else f"is less than one block of ctx={ctx} tokens"
        raise ConfigError(f"n_tokens={n_tokens} {what}", hint=f"ask for at least ctx={ctx} tokens (n_tokens >= {ctx})")
    max_blocks = None if n_tokens is None else n_tokens // ctx
    blocks = list(iter_blocks(source, tokenizer, ctx, max_blocks, text_column, prepend_bos))
    if not blocks:
        raise DataSourceError(f"the source holds fewer than {ctx} tokens", hint="use a smaller --ctx or more text")
    if max_blocks is not None and len(blocks) < max_blocks:
        raise DataSourceError(f"the source holds only {len(blocks) * ctx} tokens in blocks of {ctx}, "
                              f"{n_tokens} were asked for", hint=f"use --tokens {len(blocks) * ctx} or more text")
    return blocks_tensor(blocks)


def blocks_tensor(blocks: list) -> torch.Tensor:
    """LongTensor `[n, ctx]` from the blocks `iter_blocks` yields: numpy rows (pre-tokenized files) are stacked
    as arrays (a Python-int round trip costs ~0.4 s per million tokens), lists of ints go through torch."""
    if blocks and isinstance(blocks[0], np.ndarray):
        return torch.from_numpy(np.stack(blocks).astype(np.int64, copy=False))
    return torch.tensor(blocks, dtype=torch.long)


def blocks_hash(blocks: torch.Tensor) -> str:
    """sha256 of the token ids (int64, row-major): identifies the exact tokens a cache was built from."""
    return hashlib.sha256(np.ascontiguousarray(blocks.numpy().astype(np.int64)).tobytes()).hexdigest()


def describe_source(source) -> str:
    """A short string for manifests: the path, 'embedded', 'hf:NAME' or 'list[N]'."""
    if isinstance(source, (list, tuple)):
        return f"list[{len(source)}]"
    if str(source) == EMBEDDED:
        return f"embedded ({embedded_corpus_path()})"
    return str(source)
