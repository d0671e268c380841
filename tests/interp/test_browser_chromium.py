"""The latent browser in headless Chromium from file://: no console errors, no network, index -> latent -> back,
sorting, token search, and hostile token strings (<script>, onerror=, U+202E) rendered as inert, visible text."""

from __future__ import annotations

import re
import shutil

import pytest

import browser_support as B
import report_support as S
from interp.browser import build_browser

_reason = S.browser_skip_reason()
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"browser tests need Chromium + Playwright: {_reason}")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("bsite")
    B.make_sae(root / "sae")
    cache = B.make_cache(root / "cache", B.make_data())
    return build_browser(root / "sae", cache, root / "site", model=B.FakeModel(), tokenizer=B.vocab(), k_top=6,
                         n_bins=16, n_quantiles=4, per_quantile=2, latent_chunk=16, index_chunk=20, device="cpu")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=S.CHROMIUM, headless=True, args=S.CHROMIUM_ARGS)
        yield b
        b.close()


def _clean(v, site) -> None:
    assert v.errors == [] and v.dialogs == [] and v.network(site) == [], (v.errors, v.dialogs, v.network(site))
    assert v.page.evaluate("document.querySelectorAll('img,iframe,object,embed').length") == 0


def test_index_latent_back_sort_and_search(browser, site):
    v = S.Visit(browser, (site / "index.html").resolve().as_uri())
    try:
        page = v.page
        page.wait_for_selector("#latent-table tbody tr")
        assert page.inner_text("#count") == f"{B.D_SAE} latents"  # all three index chunks arrived
        assert page.eval_on_selector_all("#latent-table tbody tr", "r => r.length") == B.D_SAE
        page.click("th[data-col='density']")  # sort ascending: the never-firing latent first
        page.wait_for_function("() => location.hash === '#sort=density'")
        assert page.inner_text("#latent-table tbody tr:first-child td:first-child") == f"#{B.D_SAE - 1}"
        page.click(f"#latent-table a[href='#latent={B.PLANTED}']")
        page.wait_for_selector("#stats")
        assert page.inner_text("h2") == f"Latent #{B.PLANTED}"
        tops = page.eval_on_selector_all("section:nth-of-type(3) .tok.center", "s => s.map(e => e.textContent)")
        assert tops and set(tops) == {" she"}, tops
        page.click("#neighbours a >> nth=0")  # weights section links to another latent
        page.wait_for_function(f"() => location.hash !== '#latent={B.PLANTED}'")
        page.go_back()
        page.wait_for_function(f"() => location.hash === '#latent={B.PLANTED}'")
        page.wait_for_selector("#stats")
        page.go_back()
        page.wait_for_selector("#latent-table")
        assert page.evaluate("location.hash") == "#sort=density"
        page.fill("#search", "She ")  # trimmed, case-insensitive
        page.press("#search", "Enter")
        page.wait_for_function("() => document.getElementById('count').textContent.includes('contain')")
        ids = page.eval_on_selector_all("#latent-table tbody td:first-child", "s => s.map(e => e.textContent)")
        assert f"#{B.PLANTED}" in ids and len(ids) < B.D_SAE
        _clean(v, site)
    finally:
        v.close()


def _hostile_latent(site) -> int:
    """A latent whose top contexts show the <script>/onerror/U+202E tokens."""
    for c in range(3):
        _, recs = B.read_chunk(site / "data" / "latents" / f"c{c:05d}.js")
        for j, rec in recs.items():
            text = "".join(t for x in rec["top"] for t in x["t"])
            if "<script>" in text and "onerror" in text and "U+202E" in text:
                return int(j)
    raise AssertionError("no latent shows all hostile tokens")


@pytest.mark.parametrize("with_csp", [True, False])
def test_hostile_tokens_render_inert(browser, site, tmp_path, with_csp):
    """Also with the Content-Security-Policy stripped: escaping (textContent) alone must hold."""
    root = site
    if not with_csp:
        root = tmp_path / "nocsp"
        shutil.copytree(site, root)
        index = root / "index.html"
        index.write_text(re.sub(r"<meta http-equiv='Content-Security-Policy'[^>]*>", "", index.read_text()))
    j = _hostile_latent(root)
    v = S.Visit(browser, (root / "index.html").resolve().as_uri() + f"#latent={j}")
    try:
        v.page.wait_for_selector("#stats")
        text = v.page.inner_text("main")
        assert "<script>alert(1)</script>" in text and "onerror=alert(1)" in text  # shown as text
        assert "\u202e" not in v.page.evaluate("document.body.textContent") and "\u27e8U+202E\u27e9" in text
        assert v.page.evaluate("document.querySelectorAll('script:not([src])').length") == 1  # the app only
        srcs = v.page.eval_on_selector_all("script[src]", "s => s.map(e => e.getAttribute('src'))")
        assert all(re.fullmatch(r"data/(meta|index/c\d{5}|latents/c\d{5}|search/b\d{3})\.js", s) for s in srcs), srcs
        v.page.goto((root / "index.html").resolve().as_uri() + "#search=" + "%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        v.page.wait_for_function("() => (document.getElementById('count') || {}).textContent?.includes('contain')")
        _clean(v, root)
    finally:
        v.close()


def test_csp_allows_only_the_app_and_its_chunks(browser, site, tmp_path):
    """A script tag injected into the page (as if escaping failed) is refused; the data chunks still load."""
    root = tmp_path / "inj"
    shutil.copytree(site, root)
    index = root / "index.html"
    index.write_text(index.read_text().replace("<main", "<script>alert(3)</script><img src=x onerror=alert(4)><main"))
    v = S.Visit(browser, index.resolve().as_uri())
    try:
        v.page.wait_for_selector("#latent-table tbody tr")
        assert v.dialogs == [] and any("Content Security Policy" in e for e in v.errors), v.errors
    finally:
        v.close()
