"""Result save/load round trip: numbers and arrays come back exactly."""

import json
import shutil

import numpy as np
import pytest

from interp.errors import InterpError
from interp.results import Result


def test_result_round_trip(tmp_path):
    arr = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    r = Result(summary={"fvu": 0.25, "n": 3}, details={"table": [{"a": 1.5}]}, arrays={"x": arr},
               config={"seed": 0}, provenance={"model": "m"})
    r.save(tmp_path)
    back = Result.load(tmp_path)
    assert back.summary == {"fvu": 0.25, "n": 3}
    assert back.details == {"table": [{"a": 1.5}]}
    np.testing.assert_array_equal(back.arrays["x"], arr)
    assert "fvu" in back._repr_html_()


def _saved(folder, n=4, seed=0):
    arr = np.random.default_rng(seed).standard_normal((n, 2))
    return Result(summary={"n": n}, arrays={"x": arr}).save(folder)


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "result.json").write_text((d / "result.json").read_text()[:40]), "JSONDecodeError"),
    (lambda d: (d / "result.json").write_text("[1, 2]"), "not a result document"),
    (lambda d: (d / "arrays.safetensors").unlink(), "arrays file arrays.safetensors is missing"),
    (lambda d: (d / "arrays.safetensors").write_bytes((d / "arrays.safetensors").read_bytes()[:30]), "sha256"),
])
def test_damaged_result_is_one_typed_error_naming_the_file(tmp_path, damage, message):
    damage(_saved(tmp_path / "r"))
    with pytest.raises(InterpError, match=message) as e:
        Result.load(tmp_path / "r")
    assert str(tmp_path / "r" / "result.json") in e.value.message


def test_arrays_of_another_run_are_refused(tmp_path):
    """A save killed between its two renames leaves one run's result.json beside another's arrays."""
    _saved(tmp_path / "a", n=14)
    _saved(tmp_path / "b", n=5, seed=1)
    shutil.copy(tmp_path / "b" / "arrays.safetensors", tmp_path / "a" / "arrays.safetensors")
    with pytest.raises(InterpError, match="not the file saved with it"):
        Result.load(tmp_path / "a")
    doc = json.loads((tmp_path / "a" / "result.json").read_text())
    del doc["arrays_sha256"]  # results saved before the checksum existed: shapes are still compared
    (tmp_path / "a" / "result.json").write_text(json.dumps(doc))
    with pytest.raises(InterpError, match=r"array 'x' is float64 \[5, 2\], result.json says float64 \[14, 2\]"):
        Result.load(tmp_path / "a")


def test_saved_files_follow_the_umask(tmp_path):
    """Reports and caches are written readable by others when the umask says so (mkstemp alone gives 0600)."""
    from interp.fileio import _file_mode

    _saved(tmp_path / "r")
    want = _file_mode()
    assert want == 0o666 & ~_current_umask()
    for f in ("result.json", "arrays.safetensors"):
        assert (tmp_path / "r" / f).stat().st_mode & 0o777 == want


def _current_umask() -> int:
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return mask
