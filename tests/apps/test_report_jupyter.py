"""Jupyter use of every analysis' Result subclass: a useful, escaped `_repr_html_` and its own `figures()`."""

from __future__ import annotations

import html

import pytest

from apps.report import ANALYSES, result_class
from apps.report.registry import normalize
from interp.results import Result

PAYLOAD = "<script>alert(1)</script>"


def _cls(name: str) -> type[Result]:
    try:
        return result_class(name)
    except Exception as e:  # the analysis is not written yet, or does not import
        pytest.skip(f"analysis {name!r} unavailable: {e}")


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_repr_html_is_an_escaped_headline_table(name, tmp_path):
    cls = _cls(name)
    assert normalize(cls.analysis) == name and cls.title != Result.title, "set analysis and title ClassVars"
    assert cls.figures is not Result.figures, f"{cls.__name__} must override figures()"
    res = cls(summary={"r2": 0.875, "token": PAYLOAD, "model": '"><img src=x onerror=alert(1)>'},
              provenance={"model": PAYLOAD})
    text = res._repr_html_()
    assert "<table" in text and html.escape(cls.title) in text and "0.875" in text
    assert PAYLOAD not in text and "<img" not in text and html.escape(PAYLOAD) in text
    loaded = cls.load(res.save(tmp_path / name))
    assert type(loaded) is cls and loaded.summary == res.summary
