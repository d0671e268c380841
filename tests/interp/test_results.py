"""Result save/load round trip: numbers and arrays come back exactly."""

import numpy as np

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
