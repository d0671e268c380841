"""Report pages in headless Chromium (Debian's /usr/bin/chromium via Playwright): load from file:// with no
console errors and no network, every figure renders, hovering shows a tooltip, injected markup never runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import report_support

S = report_support
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


def _token_tooltip(name: str, v) -> None:
    """On the clean page the token trace's tooltip names the token under the mouse; no page shows an <img>."""
    assert v.page.evaluate("document.querySelectorAll('img').length") == 0, name
    if name != "clean.html":
        return
    div = v.page.query_selector("#fig-0")
    pos = div.evaluate(S.HOVER_POINT_JS)
    v.page.mouse.move(pos["x"], pos["y"])
    v.page.wait_for_function("d => d.querySelector('.hoverlayer .hovertext')", arg=div, timeout=5_000)
    text = div.evaluate("d => d.querySelector('.hoverlayer .hovertext').textContent")
    assert "token the" in text and "error" in text, text


def test_every_page_loads_renders_and_hovers(report, tmp_path):
    """All pages: no console errors, no dialogs, no network, every figure drawn and hoverable; index screenshot."""
    art = Path(os.environ.get("INTERP_ARTIFACTS") or tmp_path)
    art.mkdir(parents=True, exist_ok=True)
    shot = art / "report_index.png"
    n_plots = S.verify_report(report, screenshot=shot, extra=_token_tooltip)
    assert n_plots == 8  # clean + hostile pages, four figures each (the rest have error boxes instead)
    assert shot.stat().st_size > 10_000


def test_index_links_every_page(browser, report):
    v = S.Visit(browser, report.resolve().as_uri())
    try:
        assert v.errors == [] and v.dialogs == [] and v.network(report.parent) == []
        links = v.page.eval_on_selector_all("a", "as => as.map(a => a.getAttribute('href'))")
        assert sorted(links) == sorted(p.name for p in report.parent.glob("*.html") if p.name != "index.html")
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
        v = S.Visit(browser, path.resolve().as_uri())
        try:
            assert v.dialogs == [] and v.page.evaluate("document.querySelectorAll('img').length") == 0, page
            if page == "hostile.html":
                S.check_figures(v)  # hover over the payload tokens too
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
    v = S.Visit(browser, path.resolve().as_uri())
    try:
        assert v.dialogs == []
        assert any("Content Security Policy" in e for e in v.errors), v.errors
    finally:
        v.close()
