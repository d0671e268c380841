"""Report builder without a browser: pages, index, offline plotly.js, provenance, error boxes, escaping."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import report_support

S = report_support


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from apps.report import build_report

    root = tmp_path_factory.mktemp("results")
    S.make_results(root)
    out = tmp_path_factory.mktemp("report")
    index = build_report(root, out, registry=S.REGISTRY)
    return root, out, index


def _pages(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in out.glob("*.html")}


def test_index_links_every_result_page(built):
    root, out, index = built
    assert index == out / "index.html"
    pages = _pages(out)
    links = re.findall(r"href='([^']+\.html)'", pages["index.html"])
    n_results = len(list(root.rglob("result.json")))
    assert len(links) == n_results == len(pages) - 1
    assert all((out / link).is_file() for link in links)


def test_plotly_js_written_once_and_never_a_cdn(built):
    from plotly.offline import get_plotlyjs

    _, out, _ = built
    js = list(out.rglob("*.js"))
    assert [p.name for p in js] == ["plotly.min.js"]
    assert js[0].read_text() == get_plotlyjs()
    for name, text in _pages(out).items():
        assert "cdn" not in text.lower() and "http://" not in text and "https://" not in text, name
        srcs = re.findall(r"src='([^']*)'", text)
        assert set(srcs) <= {"plotly.min.js"}, (name, srcs)


def test_page_has_summary_provenance_and_figures(built):
    _, out, _ = built
    text = (out / "clean.html").read_text()
    assert text.count("class='plot'") == 4 and "data-figure='fig-3'" in text
    for needle in ("Headline numbers", "fvu", "0.125", "Provenance", "toy-pythia-4l", "checkpoint", "1000",
                   "blocks.1.hook_resid_post", "token source", "embedded", "token count", "4096",
                   "torch 2.13", "Configuration"):
        assert needle in text, needle
    blocks = re.findall(r"<script type='application/json' data-figure='fig-\d'>(.*?)</script>", text, re.S)
    figs = [json.loads(b) for b in blocks]
    assert [f["data"][0]["type"] for f in figs] == ["scatter", "heatmap", "bar", "scattergl"]
    assert "class='error'" not in text


def test_failures_become_error_boxes_not_crashes(built):
    _, out, _ = built
    pages = _pages(out)
    broken = pages["broken.html"]
    assert "class='error'" in broken and "figure code exploded" in broken and "1.5" in broken
    assert "class='plot'" not in broken and "plotly.min.js" not in broken
    unknown = pages["unknown.html"]
    assert "no report support for analysis" in unknown and "Headline numbers" in unknown
    missing = pages["missing.html"]
    assert "cannot import analyses.no_such_analysis" in missing and "2" in missing
    assert pages["index.html"].count("badge bad") == 4  # broken (x2), unknown, missing


def test_no_payload_survives_unescaped(built):
    _, out, _ = built
    for name, text in _pages(out).items():
        assert "<script>alert" not in text and "<img" not in text, name
        assert "onerror=alert(1)>" not in text.replace("onerror=alert(1)&gt;", ""), name
        # every <script ...> in the page is one of ours: plotly.js, the plotting loop, or figure JSON
        for tag in re.findall(r"<script[^>]*>", text):
            assert re.fullmatch(r"<script (nonce='[^']+'( src='plotly\.min\.js')?|type='application/json' "
                                r"data-figure='fig-\d+')>", tag), (name, tag)
        for body in re.findall(r"<script type='application/json'[^>]*>(.*?)</script>", text, re.S):
            assert "<" not in body and "\u2028" not in body
    hostile = (out / "hostile.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile  # the model name is shown, escaped


def test_figure_json_roundtrips_payloads(built):
    _, out, _ = built
    text = (out / "hostile.html").read_text()
    body = re.search(r"data-figure='fig-0'>(.*?)</script>", text, re.S).group(1)
    fig = json.loads(body)
    assert set(S.PAYLOADS) <= set(fig["data"][0]["text"])


def test_cache_manifest_provenance(tmp_path):
    from apps.report import build_report

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "manifest.json").write_text(json.dumps({
        "format": "interp-activation-cache", "schema_version": 1, "status": "complete", "n_rows": 8192,
        "identity": {"model": "toy-pythia-2l", "checkpoint": 512, "hooks": ["blocks.0.hook_resid_post"],
                     "data": "embedded", "n_blocks": 64, "ctx": 128, "dtype": "float16"},
        "environment": {"versions": {"torch": "2.13.0"}, "created": "2026-11-28T10:00:00+00:00"}}))
    r = S.synth_result(["a", "b"])
    r.provenance = {"model": "toy-pythia-2l", "cache": "../../cache"}
    r.save(tmp_path / "runs" / "one")
    index = build_report(tmp_path / "runs" / "one", tmp_path / "out", registry=S.REGISTRY)
    text = (index.parent / "one.html").read_text()
    for needle in ("cache model", "cache checkpoint", "512", "cache token count", "8192", "cache hooks",
                   "cache versions", "torch 2.13.0", "cache status", "complete"):
        assert needle in text, needle


def test_rebuild_is_idempotent_and_slugs_unique(tmp_path):
    from apps.report import build_report

    for sub in ("a/run", "b/run"):
        S.synth_result(["x"]).save(tmp_path / "res" / sub)
    index = build_report(tmp_path / "res", tmp_path / "out", registry=S.REGISTRY)
    first = sorted(p.name for p in index.parent.iterdir())
    build_report([tmp_path / "res" / "a" / "run", tmp_path / "res" / "b" / "run"], tmp_path / "out",
                 registry=S.REGISTRY)
    assert first == sorted(p.name for p in index.parent.iterdir()) == ["index.html", "plotly.min.js",
                                                                     "run-2.html", "run.html"]


def test_same_results_give_the_same_bytes(tmp_path):
    """The script nonce is a hash of the page: rebuilding from the same results writes identical files."""
    from apps.report import build_report

    S.synth_result(["x", "y"]).save(tmp_path / "res" / "run")
    pages = []
    for out in ("one", "two"):
        index = build_report(tmp_path / "res", tmp_path / out, registry=S.REGISTRY)
        pages.append({p.name: p.read_bytes() for p in index.parent.iterdir()})
    assert pages[0] == pages[1] and "nonce=" in pages[0]["run.html"].decode()


def test_a_figure_without_finite_values_becomes_a_note(tmp_path):
    """An all-NaN heatmap (and an empty bar chart) is replaced by a note saying so; finite figures still plot."""
    from apps.report.builder import build_report_pages

    r = S.synth_result(["x", "y"])
    r.arrays["matrix"] = np.full_like(r.arrays["matrix"], np.nan)
    r.summary = {}
    r.save(tmp_path / "res" / "run")
    index, pages = build_report_pages(tmp_path / "res", tmp_path / "out", registry=S.REGISTRY)
    text = (index.parent / "run.html").read_text()
    assert pages[0].n_figures == 4 and not pages[0].errors
    assert text.count("nothing to plot") == 2 and text.count("data-figure=") == 2  # trace and cloud plot


def test_fmt_labels_missing_numbers():
    from interp.results import fmt

    assert [fmt(0.12345, ".3f"), fmt(None), fmt(float("nan")), fmt("inf"), fmt(float("-inf")), fmt(np.float32(2))] \
        == ["0.123", "n/a", "n/a", "inf", "-inf", "2"]


def test_bad_input_is_a_typed_error(tmp_path):
    from apps.report import ReportError, build_report

    with pytest.raises(ReportError, match="no result.json"):
        build_report(tmp_path, tmp_path / "out")
    with pytest.raises(ReportError, match="does not exist"):
        build_report(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ReportError, match="is a file, not a result folder"):
        build_report(tmp_path / "notes.txt", tmp_path / "out")


def test_cli_report_takes_result_json_and_fails_on_broken_pages(tmp_path, capsys, monkeypatch):
    """`interp report` accepts a result.json path, exits 1 naming each broken result (CI must notice), and turns
    OS errors (--out is a file) into one line with exit 2."""
    from apps.cli import main
    from interp.results import Result

    monkeypatch.setattr("apps.report.builder.result_class", lambda analysis, registry=None: Result)
    Result(summary={"n": 1}, arrays={"x": np.zeros(3)}).save(tmp_path / "good")
    assert main(["report", str(tmp_path / "good" / "result.json"), "--out", str(tmp_path / "r1")]) == 0
    assert (tmp_path / "r1" / "index.html").is_file()
    Result(summary={"n": 2}, arrays={"x": np.zeros(3)}).save(tmp_path / "bad")
    (tmp_path / "bad" / "arrays.safetensors").unlink()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "good"), str(tmp_path / "bad"), "--out", str(tmp_path / "r2")]) == 1
    err = capsys.readouterr().err
    assert f"problem in {tmp_path / 'bad'}" in err and "arrays.safetensors is missing" in err and "good" not in err
    (tmp_path / "afile").write_text("x")
    assert main(["report", str(tmp_path / "good"), "--out", str(tmp_path / "afile")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("interp: error: ") and str(tmp_path / "afile") in err and "Traceback" not in err


def test_cli_analyze_help_lists_the_analyses(capsys):
    from apps.cli import main

    assert main(["analyze", "--help"]) == 0
    assert "dark-matter" in capsys.readouterr().out
    assert main(["analyze"]) == 2
    assert "hashcodes" in capsys.readouterr().err
    with pytest.raises(Exception, match="unknown analysis"):  # --debug after the subcommand: the traceback shows
        main(["analyze", "nope", "--debug"])


def test_registry_resolves_lazily_and_reports_missing():
    from analyses import REGISTRY
    from apps.report import result_class
    from apps.report.registry import UnknownAnalysisError

    assert set(REGISTRY.names()) == {"dark-matter", "lib", "obsprop", "massive", "hashcodes", "sae-evals",
                                     "sparsity"}
    assert result_class("synthetic", S.REGISTRY) is S.SynthResult
    with pytest.raises(UnknownAnalysisError, match="cannot import"):
        result_class("missing_pkg", S.REGISTRY)
    with pytest.raises(UnknownAnalysisError, match="no report support"):
        result_class("nope")


def test_rebuild_removes_only_its_own_stale_pages(tmp_path):
    from apps.report import build_report

    for sub in ("a", "b"):
        S.synth_result(["x"]).save(tmp_path / "res" / sub)
    out = tmp_path / "out"
    build_report(tmp_path / "res", out, registry=S.REGISTRY)
    (out / "notes.html").write_text("<html>mine</html>")
    build_report(tmp_path / "res" / "a", out, registry=S.REGISTRY)
    assert sorted(p.name for p in out.glob("*.html")) == ["a.html", "index.html", "notes.html"]


def test_index_orders_by_analysis(tmp_path):
    from apps.report import build_report
    from interp.results import Result

    class Massive(Result):
        analysis = "massive"

    class Dark(Result):
        analysis = "dark_matter"

    Massive(summary={"m": 1}).save(tmp_path / "res" / "a_massive")
    Dark(summary={"d": 1}).save(tmp_path / "res" / "z_dark")
    index = build_report(tmp_path / "res", tmp_path / "out", registry={"massive": Massive, "dark_matter": Dark})
    links = re.findall(r"href='([^']+\.html)'", index.read_text())
    assert links == ["z_dark.html", "a_massive.html"]
