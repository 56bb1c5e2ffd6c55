"""The course as a book (``course book``) in headless Chromium, with every request off this machine blocked.

The site is served from ``build/book/`` (the learner edition; CI builds it in its book stage, from
the notebooks its tests executed) by a local http.server on 127.0.0.1. The test opens the landing
page, lecture 04 (its LoRA explorer shown as the figure it drew) and lecture 01, and checks that
images load, that MathJax (served by the site itself) typesets the math, that no internal link is
broken, that no request left 127.0.0.1, and that no page shows solution text. Screenshots land in
``build/screenshots/book_*.png``.
"""
from __future__ import annotations

import contextlib
import functools
import threading
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

from course_lib.grading.notebook import MARKER_LIKE

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "build" / "book"
LECTURES = ("lectures/04_lora.html", "lectures/01_in_context_learning.html")

# every image, once it has loaded or failed (lazy images are told to load first)
JS_IMAGES = """async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = r; i.onerror = r; })));
  return imgs.map(i => ({src: i.currentSrc || i.src, complete: i.complete, width: i.naturalWidth}));
}"""
# MathJax 3 resolves startup.promise once the page is typeset
JS_TYPESET = """async () => {
  if (!window.MathJax || !MathJax.startup || !MathJax.startup.promise) return 'no MathJax';
  await MathJax.startup.promise;
  return 'ok';
}"""
JS_MATH = """() => ({rendered: document.querySelectorAll('mjx-container').length,
                    errors: document.querySelectorAll('mjx-merror').length,
                    raw: Array.from(document.querySelectorAll('span.math, div.math'))
                              .filter(e => !e.querySelector('mjx-container')).length})"""


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value and ((tag == "a" and name == "href") or (tag in ("img", "script") and name == "src")
                          or (tag == "link" and name == "href")):
                self.links.append(value)


def crawl(site: Path) -> tuple[set[Path], list[str]]:
    """Every HTML page reachable from index.html by internal links, and the internal links that point nowhere."""
    seen, broken, todo = set(), [], [site / "index.html"]
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        base = "file://" + str(page)
        for link in parser.links:
            url = urlparse(urljoin(base, link))
            if url.scheme != "file":
                continue  # an external link (Colab, Binder): a link, never loaded by the page
            target = Path(unquote(url.path))
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(site)} -> {link}")
            elif target.suffix == ".html" and site in target.parents:
                todo.append(target)
    return seen, broken


@contextlib.contextmanager
def serve(site: Path):
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def site():
    if not (SITE / "index.html").is_file():
        pytest.skip("no built book in build/book/. How to fix: pip install -e \".[book]\" && course book "
                    "(CI builds it in its book stage before this one)")
    with serve(SITE) as url:
        yield url


@pytest.fixture
def offline_page(page, site):
    """A page whose every request to anywhere but the local server is aborted (and remembered)."""
    blocked: list[str] = []

    def route(r):
        if r.request.url.startswith(site + "/"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.context.route("**/*", route)
    page.blocked = blocked
    return page


def open_page(page, url: str):
    page.goto(url, wait_until="load")
    assert page.evaluate(JS_TYPESET) == "ok" or "math" not in page.content(), f"MathJax did not load on {url}"


def check_images(page, where: str, at_least: int) -> int:
    images = page.evaluate(JS_IMAGES)
    bad = [i["src"] for i in images if not i["complete"] or i["width"] == 0]
    assert not bad, f"{where}: images that did not load: {bad}"
    assert len(images) >= at_least, f"{where}: expected at least {at_least} images, found {len(images)}"
    return len(images)


def check_no_solution_text(page, where: str):
    text = page.inner_text("body")
    markers = sorted({m.group(0) for m in MARKER_LIKE.finditer(text)})
    assert not markers, f"{where} shows nbgrader marker text: {markers}"


def test_no_broken_internal_link_and_no_solution_in_the_learner_edition():
    from course_lib.book import leak_problems

    if not (SITE / "index.html").is_file():
        pytest.skip("no built book in build/book/ (course book)")
    leaks = leak_problems(ROOT, SITE, ROOT / "build" / "book-src" / "learner")
    assert not leaks, f"the learner edition holds solution text: {leaks[:5]}"
    pages, broken = crawl(SITE)
    assert not broken, f"{len(broken)} broken internal links, e.g. {broken[:8]}"
    names = {str(p.relative_to(SITE)) for p in pages}
    assert set(LECTURES) <= names and "benchmarks.html" in names and any(n.startswith("exercises/") for n in names), \
        f"pages reachable from the landing page: {sorted(names)}"
    assert not any(n.startswith("solutions/") for n in names), "the learner edition links solution pages"


def test_landing_page(offline_page, site, screenshots):
    page = offline_page
    open_page(page, site + "/index.html")
    check_images(page, "landing page", at_least=0)
    body = page.inner_text("body")
    assert "Two runtimes" in body and "embedded (default)" in body, "the landing page lacks the runtimes table"
    for name in ("04_lora", "01_in_context_learning"):
        assert page.locator(f"a[href*='lectures/{name}.html']").count() >= 1, f"no link to lecture {name}"
    check_no_solution_text(page, "landing page")
    page.screenshot(path=str(screenshots / "book_index.png"))
    assert not page.blocked, f"the landing page requested other sites: {page.blocked}"


@pytest.mark.parametrize("path", LECTURES)
def test_lecture_page_shows_plots_and_math_offline(offline_page, site, screenshots, path):
    page = offline_page
    open_page(page, f"{site}/{path}")
    n = check_images(page, path, at_least=3)
    math = page.evaluate(JS_MATH)
    assert math["rendered"] >= 5 and math["errors"] == 0 and math["raw"] == 0, f"{path}: math not typeset: {math}"
    assert page.locator("div.highlight pre span").count() > 20, f"{path}: code is not highlighted"
    check_no_solution_text(page, path)
    text = page.inner_text("body")
    assert "Traceback (most recent call last)" not in text, f"{path} shows an error"
    assert "VBox(children" not in text and "Loading widget" not in text, f"{path} shows a widget as text"
    name = Path(path).stem
    page.screenshot(path=str(screenshots / f"book_{name}.png"))
    if name == "04_lora":  # the explorer, as the figure and the numbers it drew when the lecture ran
        explorer = page.locator("section").filter(has_text="Explore r and").last
        assert "trainable parameters:" in explorer.inner_text(), "the LoRA explorer's recorded output is missing"
        explorer.locator("img").last.scroll_into_view_if_needed()
        page.screenshot(path=str(screenshots / "book_04_lora_explorer.png"))
    assert not page.blocked, f"{path} requested other sites: {page.blocked}"
    print(f"{path}: {n} images, {math['rendered']} formulas typeset")
