"""Property-based bad-input tests (hypothesis): whatever a manifest, hook pattern, text source or position spec
holds, interp either works or raises its typed error (an InterpError), never a bare KeyError/TypeError/... and
never reads outside the cache folder; arrays written through the cache writer read back bit-identical."""

import contextlib
import io
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from apps.cache_cmds import cache_info
from helpers import extract_config
from interp.cache import open_cache
from interp.cache.formats import get as get_format
from interp.cache.manifest import Manifest, ShardRecord
from interp.cache.shards import STORAGE, dtype_name, shard_file
from interp.cache.sparse_formats import SPARSE_FORMATS, read_sparse, sparse_spec
from interp.cache.writer import ShardWriter
from interp.capture import hook_names, resolve_hooks
from interp.errors import CacheError, ConfigError, DataSourceError, HookNotFoundError, InterpError
from interp.extract import extract
from interp.positions import Positions
from interp.sources import token_blocks


def fast(n: int):
    """n examples without a deadline: the whole file runs in about 15 s on two busy cores."""
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow])


HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "blocks.0.hook_resid_pre"]


# ---------------------------------------------------------------------------------------------- who opens what
_OPENED: list[str] | None = None


def _audit(event, args):
    if event == "open" and _OPENED is not None and isinstance(args[0], (str, bytes, Path)):
        _OPENED.append(args[0].decode(errors="replace") if isinstance(args[0], bytes) else str(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one records only while _OPENED is a list
_PYTHON = tuple(str(Path(p).resolve()) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix})
_CODE = (".py", ".pyc", ".so")  # lazy imports and traceback source lines


def _opened_outside(inside: Path, opened: list[str]) -> list[str]:
    """Files opened that are neither in `inside` nor part of the Python installation (lazy imports)."""
    bad = []
    for p in opened:
        try:
            r = Path(p).resolve()
        except (OSError, ValueError):  # a NUL byte, ...: os.open refuses it before touching the disk
            continue
        if not r.is_relative_to(inside.resolve()) and not str(r).startswith(_PYTHON) and r.suffix not in _CODE:
            bad.append(str(r))
    return bad


# ---------------------------------------------------------------------------------------------- (a) manifests
@pytest.fixture(scope="module")
def hostile_root(tmp_path_factory, tiny_neox_dir, text_file):
    """root/cache: a small cache with a dense, a top-k and a CSR hook; root/ also holds a byte-identical twin of
    every cache file, so a manifest that smuggles `..` or an absolute path in would find valid files there."""
    root = tmp_path_factory.mktemp("hostile")
    formats = {HOOKS[1]: sparse_spec("topk", k=4, d=32), HOOKS[2]: sparse_spec("threshold", threshold=0.02, d=32)}
    cfg = extract_config(root / "cache", tiny_neox_dir, text_file, tokens=256, hooks=HOOKS, formats=formats)
    extract(cfg, progress=False)
    for f in (root / "cache").glob("*.npy"):
        shutil.copy(f, root / f.name)
    return root


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from([-1, 0, 1, 2, 65536, 2**31, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c,
                                                                                              max_size=3),
                           max_leaves=6)
HOSTILE_NAMES = ["..", "../{f}", "../../{f}", "{root}/{f}", "/etc/passwd", "./{f}", "sub/../../{f}", "{f}/..",
                 "~/{f}", ".{f}", "{f}\x00", "..\\{f}", "", " {f}", "{f}/", "/{f}"]
ACTIONS = ["replace", "delete", "wrap_list", "wrap_dict", "hostile_name", "rename_key", "negate", "drop_item"]


def _mutate(data, doc: dict, root: Path) -> dict:
    """1-4 random edits anywhere in the document: wrong types, deletions, extra nesting, hostile paths."""
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        parent, key, node = None, None, doc
        for _ in range(data.draw(st.integers(1, 6), label="depth")):
            keys = sorted(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
            if not keys:
                break
            k = data.draw(st.sampled_from(keys), label="key")
            parent, key, node = node, k, node[k]
        if parent is None:
            continue
        action = data.draw(st.sampled_from(ACTIONS), label="action")
        f = node if isinstance(node, str) and node else str(key)
        hostile = data.draw(st.sampled_from(HOSTILE_NAMES), label="name").format(f=f, root=root)
        if action == "replace":
            parent[key] = data.draw(JSON_VALUES, label="value")
        elif action == "delete" or (action == "drop_item" and isinstance(parent, dict)):
            del parent[key]
        elif action == "drop_item":
            parent.pop(key)
        elif action == "wrap_list":
            parent[key] = [node]
        elif action == "wrap_dict":
            parent[key] = {"value": node}
        elif action == "hostile_name":
            parent[key] = hostile
        elif action == "rename_key" and isinstance(parent, dict):
            parent[hostile] = parent.pop(key)
        elif action == "negate" and isinstance(node, (int, float)) and not isinstance(node, bool):
            parent[key] = -node - 1
    return doc


def _exercise(cache: Path) -> None:
    """What users do with a cache: info, verify, open, read every hook (dense and sparse), gather, tokens."""
    with contextlib.redirect_stdout(io.StringIO()):
        cache_info(str(cache))
    reader = open_cache(cache, verify="lazy", allow_incomplete=True)
    reader.verify_all()
    for hook in reader.hooks:
        spec = reader.spec(hook)
        if spec.get("format") in SPARSE_FORMATS:
            read_sparse(reader, hook, 0, 3)
        reader.read(hook, 0, 40)
        if reader.n_rows:
            reader.gather(hook, np.array([reader.n_rows - 1, 0]))
    assert reader.tokens.shape[-1] == 3


def _check_hostile(cache: Path, write) -> str:
    """Open and read a cache whose manifest `write` replaced: it reads fine or raises an InterpError, and never
    opens a file outside the cache. Returns what happened."""
    global _OPENED
    original = (cache / "manifest.json").read_bytes()
    try:
        write(cache / "manifest.json")
        _OPENED = []
        try:
            _exercise(cache)
            outcome = "read fine"
        except InterpError as e:
            outcome = f"refused: {type(e).__name__}"
        event(outcome)
        opened, _OPENED = _OPENED, None
        assert not _opened_outside(cache, opened), f"read outside the cache: {_opened_outside(cache, opened)}"
        return outcome
    finally:
        _OPENED = None
        (cache / "manifest.json").write_bytes(original)


def test_untouched_manifest_reads_and_audit_sees_outside_reads(hostile_root):
    """The baseline for the properties: the unmutated cache reads fine, and a read of the twin is noticed."""
    global _OPENED
    cache = hostile_root / "cache"
    _exercise(cache)
    reader = open_cache(cache)
    assert 0 < read_sparse(reader, HOOKS[2]).nnz < reader.n_rows * 32  # a CSR hook with rows of varying length
    _OPENED = []
    try:
        np.load(hostile_root / "tokens.00000.npy")
        opened = _OPENED
    finally:
        _OPENED = None
    assert _opened_outside(cache, opened)


@fast(150)
@given(data=st.data())
def test_hostile_manifest_json_is_refused_with_typed_error(hostile_root, data):
    cache = hostile_root / "cache"
    doc = _mutate(data, json.loads((cache / "manifest.json").read_text()), hostile_root)
    assert _check_hostile(cache, lambda p: p.write_text(json.dumps(doc))).startswith(("read fine", "refused: "))


RAW_MANIFESTS = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"\xff\xfe{", b'{"format": "interp-activation-cache", "schema_version": 1', b"null",
                     b"[" * 100_000 + b"]" * 100_000, b'{"a": ' * 50_000 + b"1" + b"}" * 50_000,
                     b'{"format": "interp-activation-cache", "schema_version": 1, "n": 1' + b"0" * 5000 + b"}",
                     '{"format": "interp-activation-cache", "schema_version": 1, "x": "\udcff"}'.encode(
                         "utf-8", "surrogatepass"), b'\xef\xbb\xbf{"format": 1}', "{}".encode("utf-16")]),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
)


@fast(100)
@given(raw=RAW_MANIFESTS)
@example(raw=b"\xf0")  # found: UnicodeDecodeError escaped Manifest.load
@example(raw=b"[" * 100_000 + b"]" * 100_000)  # RecursionError
def test_raw_manifest_bytes_are_refused_with_typed_error(hostile_root, raw):
    assert _check_hostile(hostile_root / "cache", lambda p: p.write_bytes(raw)).startswith(("read fine", "refused: "))


@fast(200)
@given(doc=JSON_VALUES | st.fixed_dictionaries({"format": st.just("interp-activation-cache"),
                                                "schema_version": st.just(1)}, optional={
    k: JSON_VALUES for k in ("identity", "hooks", "layout", "shards", "status", "summary", "environment")}))
def test_manifest_from_json_any_document(doc):
    """The pure loader: any JSON document is a Manifest or a CacheError, never another exception."""
    try:
        m = Manifest.from_json(doc)
    except CacheError:
        return
    for s in m.shards:
        assert s.rows[0] <= s.rows[1] and all(Path(n).name == n and not n.startswith(".") for n in s.files)


@fast(100)
@given(st.dictionaries(st.sampled_from(["index", "rows", "blocks", "files"]), JSON_VALUES))
def test_shard_record_any_document(d):
    """Any document is a record that round-trips, or one of the errors Manifest.from_json turns into CacheError."""
    try:
        record = ShardRecord.from_json(d)
    except (ValueError, KeyError, TypeError):
        return
    assert ShardRecord.from_json(record.to_json()) == record


# ---------------------------------------------------------------------------------------------- (b) hook patterns
class _Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


HOOK_FRAGMENTS = ["blocks", ".", "*", "?", "[", "]", "!", "0", "1", "9", "hook_resid_post", "hook_z", "attn", "mlp",
                  "hook_", "ln_final", "embed", "hook_pattern", "net", "**", "[!0]", "[0-1]", "\\", " ", "\x00", "é"]
PATTERNS = st.one_of(st.text(max_size=30), st.lists(st.sampled_from(HOOK_FRAGMENTS), max_size=8).map("".join))


@fast(150)
@given(patterns=st.one_of(PATTERNS, st.lists(PATTERNS, min_size=1, max_size=3)))
@example(patterns="blocks.[01].hook_resid_pos[!t]")
def test_random_hook_patterns_resolve_or_name_the_pattern(tiny_model, patterns):
    for model in (tiny_model, _Mlp()):
        available = hook_names(model)
        try:
            names = resolve_hooks(model, patterns)
        except HookNotFoundError as e:
            assert any(f"'{p}'" in e.message for p in ([patterns] if isinstance(patterns, str) else patterns))
            continue
        assert names and set(names) <= set(available)
        assert names == [n for n in available if n in set(names)]  # model order, no repeats


def test_empty_hook_pattern_list_is_refused(tiny_model):
    with pytest.raises(HookNotFoundError, match="no hook pattern"):
        resolve_hooks(tiny_model, [])


# ---------------------------------------------------------------------------------------------- (c) text sources
@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return tiny_model.tokenizer


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


ANY_TEXT = st.text(max_size=40) | st.text(st.characters(categories=("Cs", "Ll", "Zs", "Cc", "Lo")), max_size=40)
NPY_BYTES = hnp.arrays(st.sampled_from([np.int32, np.int64, np.uint16, np.int8, np.float32]),
                       hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=12)).map(_npy_bytes)
TEXT_BYTES = st.one_of(
    NPY_BYTES,
    st.binary(max_size=300),
    ANY_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),  # lone surrogates: invalid UTF-8
    st.sampled_from([b"", b" ", b"\n\n\t ", b"\xef\xbb\xbf", b"\xff\xfe", b"\x00" * 50, "é".encode("latin-1") * 9,
                     b'{"text": "\\ud800 lone surrogate and more words to fill a block"}\n',
                     b'{"text": ' + b"[" * 50_000 + b"]" * 50_000 + b"}\n", b'{"text": 12345678}\n' * 5,
                     b'{"nottext": "a"}\n', b"[1, 2]\n", b"PAR1" + b"\x00" * 40 + b"PAR1", b"\x93NUMPY garbage"]),
)


@fast(150)
@example(raw=b'{"text": "\\ud800 lone"}\n', suffix=".jsonl", ctx=2, n_tokens=None, folder=False)  # found: TypeError
@example(raw=b'{"text": 1' + b"0" * 5000 + b"}\n", suffix=".jsonl", ctx=2, n_tokens=None, folder=False)  # ValueError
@example(raw=b"PAR1", suffix=".parquet", ctx=2, n_tokens=None, folder=True)  # found: ArrowInvalid
@example(raw=b"", suffix=".npy", ctx=2, n_tokens=None, folder=False)  # found: EOFError
@example(raw=_npy_bytes(np.array([5, -1, 10**6, 7])), suffix=".npy", ctx=2, n_tokens=None, folder=False)  # ids >= vocab
@given(raw=TEXT_BYTES, suffix=st.sampled_from([".txt", ".jsonl", ".json", ".parquet", ".npy", ""]),
       ctx=st.integers(2, 8), n_tokens=st.none() | st.integers(1, 40), folder=st.booleans())
def test_random_bytes_as_text_source(tokenizer, raw, suffix, ctx, n_tokens, folder):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "src" / f"doc{suffix}"
        path.parent.mkdir()
        path.write_bytes(raw)
        try:
            blocks = token_blocks(str(path.parent if folder else path), tokenizer, ctx=ctx, n_tokens=n_tokens)
        except ConfigError as e:  # fewer tokens than one block asked for: refused before reading
            assert n_tokens is not None and n_tokens < ctx and "\n" not in e.message
            return
        except DataSourceError as e:
            assert e.message and "\n" not in e.message
            return
    assert blocks.dtype == torch.long and blocks.dim() == 2 and blocks.shape[1] == ctx and len(blocks) >= 1
    assert int(blocks.min()) >= 0 and int(blocks.max()) < len(tokenizer)


@fast(150)
@given(texts=st.lists(ANY_TEXT, max_size=6), ctx=st.integers(2, 6))
@example(texts=["a\ud800b c d"], ctx=2)  # found: the fast tokenizer's TypeError escaped
def test_random_strings_as_text_source(tokenizer, texts, ctx):
    try:
        blocks = token_blocks(texts, tokenizer, ctx=ctx)
    except DataSourceError:
        return
    assert blocks.shape[1] == ctx


# ---------------------------------------------------------------------------------------------- (d) positions
POSITION_SPECS = st.one_of(
    st.text(max_size=20),
    st.tuples(st.sampled_from(["drop:", "range:", "last", "all", " all ", "range:1", "drop"]),
              st.lists(st.one_of(st.integers(-50, 50).map(str), st.sampled_from(["", ":", " ", "+3", "1_0", "x", "٣",
                                                                                "1e3", "0x1", "-0"])), max_size=3))
    .map(lambda t: t[0] + ":".join(t[1])),
)


@fast(300)
@given(spec=POSITION_SPECS, batch=st.integers(1, 3), ctx=st.integers(1, 12))
@example(spec="range:15:5", batch=1, ctx=7)  # found: accepted, selected nothing, spec() did not parse back
@example(spec="range:-8:", batch=1, ctx=7)  # found: accepted; "drop:-8" (its spec()) is refused
def test_position_specs_parse_or_refuse(spec, batch, ctx):
    try:
        p = Positions.parse(spec)
    except ConfigError as e:
        assert "position selector" in e.message
        return
    assert p.kind in ("all", "last", "range")
    assert p.start >= 0 and (p.stop is None or p.stop > p.start)
    assert Positions.parse(p.spec()) == p  # what the manifest stores parses back to the same selector
    acts = torch.arange(batch * ctx, dtype=torch.float32).view(batch, ctx, 1)
    rows = p.select(acts)
    seq, pos = p.index(batch, ctx)
    assert rows.shape == (len(seq), 1) and torch.equal(rows[:, 0], (seq * ctx + pos).float())


# ---------------------------------------------------------------------------------------------- (e) round trip
@st.composite
def _arrays(draw):
    dtype = draw(st.sampled_from(["float32", "float16", "float64", "bfloat16"]))
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=6))
    if dtype == "bfloat16":  # any 16-bit pattern is a bfloat16, NaN payloads and subnormals included
        bits = draw(hnp.arrays(np.int16, shape))
        return dtype, torch.from_numpy(bits).view(torch.bfloat16)
    arr = draw(hnp.arrays(np.dtype(dtype), shape, elements=st.floats(width=np.dtype(dtype).itemsize * 8,
                                                                     allow_nan=True, allow_subnormal=True)))
    return dtype, torch.from_numpy(arr)


def _bits(t: torch.Tensor) -> np.ndarray:
    """Raw bit patterns (NaN payloads, -0.0 and subnormals compare exactly)."""
    return t.contiguous().view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]).numpy()


@fast(40)
@given(arr=_arrays(), cuts=st.lists(st.integers(0, 6), max_size=3), data=st.data())
def test_cache_writer_round_trip_is_bit_identical(arr, cuts, data):
    dtype, x = arr
    n = len(x)
    bounds = sorted({0, n, *(min(c, n) for c in cuts)})
    spec = {"shape": list(x.shape[1:]), "dtype": dtype_name(dtype), "file_stem": "h", "format": "dense"}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Manifest(identity={"ctx": 1}, hooks={"h": spec}, layout={"blocks_per_shard": 1, "rows_per_block": 1})
        writer = ShardWriter(Path(tmp), manifest, max_pending=1)
        for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
            arrays = {shard_file("h", i): get_format("dense").encode(x[a:b], spec)["data"],
                      shard_file("tokens", i): np.zeros((b - a, 3), dtype=np.int64)}
            writer.submit(i, (a, b), (a, b), arrays)
        writer.close()
        manifest.status = "complete"
        manifest.save(Path(tmp))
        reader = open_cache(tmp)
        back = reader.read("h")
        assert back.dtype == STORAGE[dtype][0] and back.shape == x.shape
        assert np.array_equal(_bits(back), _bits(x))
        a = data.draw(st.integers(0, n), label="a")
        b = data.draw(st.integers(a, n), label="b")
        assert np.array_equal(_bits(reader.read("h", a, b)), _bits(x[a:b]))
        rows = data.draw(st.lists(st.integers(0, n - 1), max_size=5), label="rows")
        assert np.array_equal(_bits(reader.gather("h", np.array(rows, dtype=np.int64))), _bits(x[rows]))
        assert not reader.verify_all()

