"""The reduced demo (`interp demo --quick`): extraction, all five analyses, a report that renders in a browser."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from apps.demo import run_demo
from apps.registry import ANALYSES
from interp.cache import open_cache
from interp.models import DEFAULT_MODEL, embedded_names


def _report_support():
    if "report_support" not in sys.modules:
        spec = importlib.util.spec_from_file_location("report_support", Path(__file__).with_name("report_support.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules["report_support"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["report_support"]


needs_model = pytest.mark.skipif(DEFAULT_MODEL not in embedded_names(), reason="the embedded default is not in data/")


@needs_model
def test_reduced_demo_one_analysis(tmp_path):
    """The default suite's reduced demo: extraction, one analysis, the report, checked in a browser."""
    _check_demo(tmp_path, ["massive"])


@needs_model
@pytest.mark.slow
def test_quick_demo_all_analyses(tmp_path):
    """All five analyses at reduced sizes (about 20 minutes on a busy 2-core machine)."""
    _check_demo(tmp_path, list(ANALYSES))


def _check_demo(tmp_path, names):
    code = run_demo(tmp_path, quick=True, only=names)
    assert code == 0
    cache = open_cache(tmp_path / "cache")
    assert cache.n_rows == 8192 and cache.verify_all() == []
    for name in names:
        doc = json.loads((tmp_path / name / "result.json").read_text())
        assert doc["summary"], name  # headline numbers exist
    index = tmp_path / "report" / "index.html"
    html = index.read_text()
    assert all(name.replace("-", "_") in html.replace("-", "_") for name in names)
    support = _report_support()
    if support.browser_skip_reason() is None:
        assert support.verify_report(index, screenshot=tmp_path / "demo_index.png") > 0
