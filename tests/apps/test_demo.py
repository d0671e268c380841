"""The reduced demo (`interp demo --quick`): extraction, all five analyses, a report that renders in a browser."""

import json

import pytest

import report_support
from analyses import REGISTRY
from apps.demo import run_demo
from interp.cache import open_cache
from interp.models import DEFAULT_MODEL, embedded_names

needs_model = pytest.mark.skipif(DEFAULT_MODEL not in embedded_names(), reason="the embedded default is not in data/")


@needs_model
def test_reduced_demo_one_analysis(tmp_path):
    """The default suite's reduced demo: extraction into a cache that dark matter reads (model -> cache -> result),
    one analysis that captures its own inputs, the report, checked in a browser."""
    assert _check_demo(tmp_path, ["dark-matter", "massive"]) == ["dark-matter", "massive"]


@needs_model
@pytest.mark.slow
def test_quick_demo_all_analyses(tmp_path):
    """All five analyses at reduced sizes (about 20 minutes on a busy 2-core machine)."""
    assert _check_demo(tmp_path, REGISTRY.names()) == REGISTRY.names()


def _check_demo(tmp_path, names) -> list[str]:
    """Run the quick demo on `names`; returns the analyses whose result.json has headline numbers."""
    code = run_demo(tmp_path, quick=True, only=names)
    assert code == 0
    if any(REGISTRY.get(n).cache_hooks for n in names):  # model -> cache -> analysis: the demo extracted it
        cache = open_cache(tmp_path / "cache")
        assert cache.n_rows == 8192 and cache.verify_all() == []
    else:  # nothing reads a cache: none is extracted
        assert not (tmp_path / "cache").exists()
    with_summary = [name for name in names if json.loads((tmp_path / name / "result.json").read_text())["summary"]]
    index = tmp_path / "report" / "index.html"
    html = index.read_text()
    assert all(name.replace("-", "_") in html.replace("-", "_") for name in names)
    support = report_support
    if support.browser_skip_reason() is None:
        assert support.verify_report(index, screenshot=tmp_path / "demo_index.png") > 0
    return with_summary
