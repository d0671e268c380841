"""Report pages in headless Chromium (Debian's /usr/bin/chromium via Playwright): load from file:// with no
console errors and no network, every figure renders, hovering shows a tooltip, injected markup never runs."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest


def _support():
    if "report_support" not in sys.modules:
        spec = importlib.util.spec_from_file_location("report_support", Path(__file__).with_name("report_support.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules["report_support"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["report_support"]


S = _support()
_reason = S.browser_skip_reason()
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"browser tests need Chromium + Playwright: {_reason}")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=S.CHROMIUM, headless=True, args=S.CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from apps.report import build_report

    root = tmp_path_factory.mktemp("results")
    S.make_results(root)
    return build_report(root, tmp_path_factory.mktemp("report"), registry=S.REGISTRY)


class Visit:
    """One page load with listeners for console errors, page errors, dialogs and every request."""

    def __init__(self, browser, url: str):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.errors.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("dialog", self._dialog)
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(url, wait_until="load")

    def _dialog(self, d) -> None:
        self.dialogs.append(f"{d.type}: {d.message}")
        d.dismiss()

    def network(self, allowed_dir: Path) -> list[str]:
        """Requests that left the report folder (anything not a file:// URL under it)."""
        prefix = allowed_dir.resolve().as_uri()
        return [u for u in self.requests if not u.startswith(prefix)]

    def close(self) -> None:
        self.context.close()


def _check_figures(v: Visit, expect_tooltip: bool = True) -> int:
    """Every .plot div rendered an SVG (or canvas) with traces; hovering a point shows its tooltip."""
    page = v.page
    plots = page.query_selector_all("div.plot")
    page.wait_for_function("() => [...document.querySelectorAll('div.plot')].every(d => d._fullLayout)",
                           timeout=20_000)
    for div in plots:
        info = div.evaluate("d => ({svg: d.querySelectorAll('svg.main-svg').length, "
                            "canvas: d.querySelectorAll('canvas').length, traces: (d._fullData || []).length, "
                            "failed: d.classList.contains('plot-error')})")
        assert not info["failed"] and info["traces"] > 0 and (info["svg"] or info["canvas"]), info
        if expect_tooltip:
            pos = div.evaluate(S.HOVER_POINT_JS)
            page.mouse.move(pos["x"], pos["y"])
            page.wait_for_function("d => d.querySelector('.hoverlayer .hovertext')", arg=div, timeout=5_000)
            assert div.evaluate("d => d.querySelector('.hoverlayer .hovertext').textContent.length") > 0
            page.mouse.move(0, 0)
    return len(plots)


def test_every_page_loads_renders_and_hovers(browser, report):
    out = report.parent
    n_plots = 0
    for html_file in sorted(out.glob("*.html")):
        v = Visit(browser, html_file.resolve().as_uri())
        try:
            n_plots += _check_figures(v)
            if html_file.name == "clean.html":  # the token trace's tooltip names the token under the mouse
                div = v.page.query_selector("#fig-0")
                pos = div.evaluate(S.HOVER_POINT_JS)
                v.page.mouse.move(pos["x"], pos["y"])
                v.page.wait_for_function("d => d.querySelector('.hoverlayer .hovertext')", arg=div, timeout=5_000)
                text = div.evaluate("d => d.querySelector('.hoverlayer .hovertext').textContent")
                assert "token the" in text and "error" in text, text
            assert v.errors == [], (html_file.name, v.errors)
            assert v.dialogs == [], (html_file.name, v.dialogs)
            assert v.network(out) == [], (html_file.name, v.network(out))
            assert v.page.evaluate("document.querySelectorAll('img').length") == 0
        finally:
            v.close()
    assert n_plots == 6  # clean + hostile pages, three figures each (the rest have error boxes instead)


def test_index_screenshot_artifact(browser, report, tmp_path):
    art = Path(os.environ.get("INTERP_ARTIFACTS") or tmp_path)
    art.mkdir(parents=True, exist_ok=True)
    v = Visit(browser, report.resolve().as_uri())
    try:
        assert v.errors == [] and v.dialogs == [] and v.network(report.parent) == []
        links = v.page.eval_on_selector_all("a", "as => as.map(a => a.getAttribute('href'))")
        assert len(links) == len(list(report.parent.glob("*.html"))) - 1
        shot = art / "report_index.png"
        v.page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    finally:
        v.close()


def test_injection_blocked_even_without_csp(browser, report, tmp_path):
    """Escaping alone must hold: strip the Content-Security-Policy and check no payload executes or creates an img."""
    import re
    import shutil

    out = tmp_path / "nocsp"
    shutil.copytree(report.parent, out)
    for page in ("hostile.html", "broken.html", "unknown.html", "index.html"):
        path = out / page
        path.write_text(re.sub(r"<meta http-equiv='Content-Security-Policy'[^>]*>", "", path.read_text()))
        assert "Content-Security-Policy" not in path.read_text()
        v = Visit(browser, path.resolve().as_uri())
        try:
            if page == "hostile.html":
                _check_figures(v)  # hover over the payload tokens too
            assert v.dialogs == [], (page, v.dialogs)
            assert v.page.evaluate("document.querySelectorAll('img').length") == 0, page
            assert v.page.evaluate("document.querySelectorAll('script').length") == (
                v.page.evaluate("document.querySelectorAll('script[nonce],script[data-figure]').length")), page
            assert v.errors == [], (page, v.errors)
        finally:
            v.close()


def test_csp_blocks_a_script_that_escaped_escaping(browser, tmp_path):
    """Defence in depth: a raw injected <script> in a page (as if escaping failed) is refused by the CSP."""
    from apps.report import render

    body = f"<p>{S.SCRIPT}</p><img src=x onerror=alert(1)>"
    path = tmp_path / "raw.html"
    path.write_text(render.page("raw", body, "testnonce"))
    v = Visit(browser, path.resolve().as_uri())
    try:
        assert v.dialogs == []
        assert any("Content Security Policy" in e for e in v.errors), v.errors
    finally:
        v.close()
