"""Token sources: every input form yields the same tokens for the same documents."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from helpers import CORPUS, tiny_tokenizer
from interp.errors import ConfigError, DataSourceError
from interp.sources import BlockReader, iter_texts, token_blocks


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _reference(tok, docs, ctx):
    ids = []
    for d in docs:
        ids += [tok.eos_token_id] + tok(d, add_special_tokens=False)["input_ids"]
    n = len(ids) // ctx
    return torch.tensor(ids[: n * ctx]).view(n, ctx)


def test_all_forms_agree(tmp_path, tok):
    docs = CORPUS[:10]
    ref = _reference(tok, docs, 16)
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"body": t}) + "\n" for t in docs))
    pq.write_table(pa.table({"body": docs}), tmp_path / "d.parquet")
    folder = tmp_path / "folder"
    folder.mkdir()
    for i, t in enumerate(docs):
        (folder / f"{i:02d}.txt").write_text(t)
    forms = [docs, str(tmp_path / "d.jsonl"), str(tmp_path / "d.parquet"), str(folder)]
    for form in forms:
        got = token_blocks(form, tok, ctx=16, text_column="body")
        assert torch.equal(got, ref), form
    assert torch.equal(token_blocks(docs, tok, ctx=16, n_tokens=64), ref[:4])


def test_prepend_bos_blocks(tok):
    got = token_blocks(CORPUS[:5], tok, ctx=16, prepend_bos=True)
    assert (got[:, 0] == tok.eos_token_id).all()


@pytest.mark.parametrize("prepend_bos", [False, True])
def test_pretokenized_npy_blocks_equal_text_blocks(tmp_path, tok, prepend_bos):
    """A .npy of the stream's token ids gives the same blocks as the text (its rows come back as int64 numpy
    arrays, stacked without a Python-int round trip), with and without a BOS per block."""
    import numpy as np

    docs = CORPUS[:10]
    ids = []
    for d in docs:
        ids += [tok.eos_token_id] + tok(d, add_special_tokens=False)["input_ids"]
    np.save(tmp_path / "ids.npy", np.array(ids, dtype=np.int32))
    ref = token_blocks(docs, tok, ctx=16, prepend_bos=prepend_bos)
    got = token_blocks(str(tmp_path / "ids.npy"), tok, ctx=16, prepend_bos=prepend_bos)
    assert got.dtype == torch.long and torch.equal(got, ref)


def test_bad_sources(tmp_path, tok):
    with pytest.raises(DataSourceError, match="not a file, folder"):
        list(iter_texts(str(tmp_path / "missing.txt")))
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\nnot json\n')
    with pytest.raises(DataSourceError, match="bad.jsonl:2 is not valid JSON"):
        list(iter_texts(str(tmp_path / "bad.jsonl")))
    with pytest.raises(DataSourceError, match="no 'content' field"):
        list(iter_texts(str(tmp_path / "bad.jsonl"), text_column="content"))
    with pytest.raises(DataSourceError, match="only .* tokens"):
        token_blocks(["tiny"], tok, ctx=4, n_tokens=400)


@pytest.mark.parametrize("n_tokens", [0, -64, 15])
def test_fewer_tokens_than_one_block_are_refused(tok, n_tokens):
    """A non-positive or sub-block size used to be clamped to one block silently."""
    with pytest.raises(ConfigError, match=f"n_tokens={n_tokens} "):
        token_blocks(CORPUS[:10], tok, ctx=16, n_tokens=n_tokens)


def test_pretokenized_npy(tmp_path, tok):
    import numpy as np

    ref = token_blocks(CORPUS[:10], tok, ctx=16)
    np.save(tmp_path / "flat.npy", ref.reshape(-1).numpy().astype(np.int32))
    np.save(tmp_path / "blocks.npy", ref.numpy())
    assert torch.equal(token_blocks(str(tmp_path / "flat.npy"), tok, ctx=16), ref)
    assert torch.equal(token_blocks(str(tmp_path / "blocks.npy"), tok, ctx=16, n_tokens=32), ref[:2])
    with pytest.raises(DataSourceError, match="blocks of 16 tokens, --ctx is 8"):
        token_blocks(str(tmp_path / "blocks.npy"), tok, ctx=8)


@pytest.mark.parametrize("prepend_bos", [False, True])
def test_block_reader_take_and_skip_follow_the_stream(tmp_path, tok, prepend_bos):
    """Runs of take/skip over text and over a token file land on the same blocks as one full read; a token file
    is sliced as a plain array (slicing np.memmap costs time in proportion to the file, a quadratic walk)."""
    import numpy as np

    docs = CORPUS[:20]
    ref = token_blocks(docs, tok, ctx=16, prepend_bos=prepend_bos)
    ids = []
    for d in docs:
        ids += [tok.eos_token_id] + tok(d, add_special_tokens=False)["input_ids"]
    np.save(tmp_path / "ids.npy", np.array(ids, dtype=np.uint16))
    n = len(ref) - 1  # stop one block short of the source: takes past max_blocks come back short
    for source in (docs, str(tmp_path / "ids.npy")):
        reader = BlockReader(source, tok, 16, n, prepend_bos=prepend_bos)
        assert reader.available == (None if isinstance(source, list) else n)
        got, pos = [], 0
        for step, size in enumerate([3, 5, 0, 7, 2, 11, 4, 10_000]):
            if step % 2:
                assert reader.skip(size) == min(size, n - pos)
            else:
                rows = reader.take(size)
                assert rows.dtype == torch.long and rows.shape == (min(size, n - pos), 16)
                got.append((pos, rows))
            pos = min(pos + size, n)
        for start, rows in got:
            assert torch.equal(rows, ref[start:start + len(rows)])
        assert reader.take(5).shape == (0, 16) and reader.skip(5) == 0
        if reader.file is not None:
            assert type(reader.file.flat) is np.ndarray


def test_prepend_bos_uses_a_bos_id_of_zero(tmp_path):
    """BART/XGLM-style tokenizers have BOS 0 and EOS 2: id 0 is a real BOS, not a missing one."""
    from types import SimpleNamespace

    import numpy as np

    from interp.sources import _bos_id

    assert _bos_id(SimpleNamespace(bos_token_id=0, eos_token_id=2)) == 0
    assert _bos_id(SimpleNamespace(bos_token_id=None, eos_token_id=2)) == 2  # Pythia: EOS doubles as BOS
    assert _bos_id(SimpleNamespace()) == 0
    np.save(tmp_path / "ids.npy", np.arange(5, 5 + 64, dtype=np.int64))
    blocks = token_blocks(str(tmp_path / "ids.npy"), SimpleNamespace(bos_token_id=0, eos_token_id=2), ctx=16,
                          prepend_bos=True)
    assert bool((blocks[:, 0] == 0).all()) and int(blocks[0, 1]) == 5
