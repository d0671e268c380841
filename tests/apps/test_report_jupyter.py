"""Jupyter use of every analysis' Result subclass: a useful, escaped `_repr_html_` and its own `figures()`."""

from __future__ import annotations

import html

import pytest

from analyses import REGISTRY
from apps.report import result_class
from interp.analysis import AnalysisConfig, normalize
from interp.results import Finding, Result

PAYLOAD = "<script>alert(1)</script>"


def _cls(name: str) -> type[Result]:
    try:
        return result_class(name)
    except Exception as e:  # the analysis is not written yet, or does not import
        pytest.skip(f"analysis {name!r} unavailable: {e}")


@pytest.mark.parametrize("name", sorted(normalize(n) for n in REGISTRY.names()))
def test_repr_html_is_an_escaped_headline_table(name, tmp_path):
    cls = _cls(name)
    assert normalize(cls.analysis) == name and cls.title != Result.title, "set analysis and title ClassVars"
    assert cls.figures is not Result.figures, f"{cls.__name__} must override figures()"
    finding = Finding.compare(PAYLOAD, 0.5, ">", 0.2, paper=PAYLOAD)
    res = cls(summary={"r2": 0.875, "token": PAYLOAD, "model": '"><img src=x onerror=alert(1)>'},
              provenance={"model": PAYLOAD}, findings=[finding])
    text = res._repr_html_()
    assert "<table" in text and html.escape(cls.title) in text and "0.875" in text and "held" in text
    assert PAYLOAD not in text and "<img" not in text and html.escape(PAYLOAD) in text
    loaded = cls.load(res.save(tmp_path / name))
    assert type(loaded) is cls and loaded.summary == res.summary and loaded.findings == [finding]


@pytest.mark.parametrize("name", REGISTRY.names())
def test_every_registered_analysis_keeps_the_contract(name):
    """The registry record: a Config on the shared base with a description for every field and defaults that
    validate, the Result the report reads back, and quick sizes that are Config fields."""
    record = REGISTRY.get(name)
    assert record.name == name and record.result is result_class(name)
    assert issubclass(record.config, AnalysisConfig)
    docs = record.config.field_help()
    assert all(docs.values()), [k for k, v in docs.items() if not v]
    record.config().validate()
    record.make_config(quick=True).validate()
