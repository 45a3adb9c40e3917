"""The documentation site, as a reader's browser shows it.

Runs against a built site (``docs/_build/html``, or ``AGRAD_DOCS_SITE``) in
Debian's headless Chromium: screenshots of the home page, the API page of
``Value`` and the chapter page, which must not be blank; the DOM of each
after its scripts ran (``--dump-dom``), which must hold the graph's SVG and
the figures; a search that must find ``backward``.  Without a browser, it
checks every link between the site's pages and that every public name has
its entry in the API reference.

Where the site is not built or there is no ``chromium``, these tests are
skipped; ``AGRAD_REQUIRE_DOCS_SITE=1`` (the docs step of ``.ci/run``) makes
that a failure instead.  Screenshots are written to ``AGRAD_DOCS_SCREENSHOTS``
(default: ``docs/_build/screenshots``), to be looked at.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import os
import shutil
import subprocess
import threading
import urllib.parse
import zlib
from pathlib import Path

import pytest
from test_docstrings import MODULES, public_names

import agrad

ROOT = Path(__file__).resolve().parent.parent
SITE = Path(os.environ.get("AGRAD_DOCS_SITE", ROOT / "docs" / "_build" / "html"))
SHOTS = Path(os.environ.get("AGRAD_DOCS_SCREENSHOTS", ROOT / "docs" / "_build" / "screenshots"))
REQUIRED = os.environ.get("AGRAD_REQUIRE_DOCS_SITE") == "1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _need(condition: bool, reason: str) -> None:
    if not condition:
        if REQUIRED:
            pytest.fail(f"{reason} (AGRAD_REQUIRE_DOCS_SITE=1)")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def site() -> Path:
    _need((SITE / "index.html").is_file(), f"no built site at {SITE}")
    return SITE


@pytest.fixture(scope="module")
def server(site):
    """The site over HTTP on the loopback, as a reader gets it (search loads
    its index with a script, which browsers refuse for file:// pages)."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser() -> str:
    _need(CHROMIUM is not None, "no chromium (apt-get install chromium)")
    return CHROMIUM


def _chromium(browser: str, *arguments: str) -> subprocess.CompletedProcess:
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    # --virtual-time-budget lets the page's scripts (search, furo's) finish
    # before the DOM is dumped or the picture taken.
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--virtual-time-budget=10000",
        *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


class _Page(html.parser.HTMLParser):
    """Each element's tag and attributes, and the text, of one HTML page."""

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data):
        self.text.append(data)

    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.elements if "id" in a}

    def all(self, tag: str, **having: str) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.elements
            if t == tag and all(value in a.get(key, "").split() for key, value in having.items())
        ]


def _dom(browser: str, url: str) -> _Page:
    return _Page(_chromium(browser, "--dump-dom", url).stdout)


def _screenshot(browser: str, url: str, name: str, height: int):
    """A screenshot of ``url``, saved, and its pixels as a numpy array."""
    import matplotlib.image

    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    path.unlink(missing_ok=True)
    _chromium(browser, f"--window-size=1280,{height}", f"--screenshot={path}", url)
    assert path.is_file(), f"chromium wrote no screenshot of {url}"
    return matplotlib.image.imread(path)


def _assert_not_blank(pixels, name: str) -> None:
    # A page that failed to render is one colour (white, or furo's grey);
    # a rendered one has text, code blocks and pictures all over it.
    grey = pixels[..., :3].mean(axis=2)
    assert grey.std() > 0.05, f"{name}: the screenshot is nearly uniform"
    ink = (grey < 0.6).mean()
    assert ink > 0.01, f"{name}: almost nothing dark on the page ({ink:.2%} of pixels)"


def _served(site: Path, page: str, src: str) -> Path:
    target = (site / page).parent / urllib.parse.unquote(src.split("#")[0].split("?")[0])
    assert target.resolve().is_file(), f"{page}: {src} is not in the site"
    return target


def test_home_page(site, server, browser):
    pixels = _screenshot(browser, f"{server}/index.html", "home", 1600)
    _assert_not_blank(pixels, "home page")
    page = _dom(browser, f"{server}/index.html")
    text = " ".join(page.text)
    assert "Linear Regression the Autograd Way" in text
    links = {a["href"] for a in page.all("a") if "href" in a}
    for target in ("getting-started.html", "chapter.html", "api/index.html", "architecture.html"):
        assert target in links, f"the home page does not link to {target}"


def test_value_api_page(site, server, browser):
    url = f"{server}/api/agrad.html"
    _assert_not_blank(_screenshot(browser, url, "api-value", 1600), "API page of Value")
    page = _dom(browser, url)
    ids = page.ids()
    for name in (
        "Value",
        "Value.backward",
        "Value.data",
        "Value.grad",
        "Value._prev",
        "sum",
        "dot",
    ):
        assert f"agrad.{name}" in ids, f"agrad.{name} is not documented on the page"
    text = " ".join("".join(page.text).split())
    # the types come from the stub, not from the compiled object
    assert "data: int | float" in text
    assert "Iterable[Value | int | float]" in text


def test_chapter_page(site, server, browser):
    url = f"{server}/chapter.html"
    _assert_not_blank(_screenshot(browser, url, "chapter", 4800), "chapter page")
    page = _dom(browser, url)
    images = [a["src"] for a in page.all("img") if "src" in a]
    graphs = [src for src in images if src.endswith(".svg")]
    figures = [src for src in images if src.endswith(".png")]
    assert graphs, "the chapter page shows no graph"
    svg = _served(site, "chapter.html", graphs[0]).read_text(encoding="utf-8")
    assert "<svg" in svg and "data" in svg and "grad" in svg, "the graph is not the loss's graph"
    # batch-loss, bodyfat-loss, bodyfat-weights
    assert len(figures) >= 3, f"the chapter page shows {len(figures)} figures"
    for src in figures:
        assert _served(site, "chapter.html", src).read_bytes().startswith(b"\x89PNG")
    text = " ".join(page.text)
    assert "450 Loss: 16.774 LinReg(w=2.556, b=-0.892)" in text  # the book's last line


def test_search_finds_backward(site, server, browser):
    page = _dom(browser, f"{server}/search.html?q=backward")
    results = [
        a["href"] for t, a in page.elements if t == "a" and "href" in a and "data-score" in a
    ]
    assert results, "searching for backward found nothing"
    assert any(href.startswith("api/agrad.html#agrad.Value.backward") for href in results)


def test_links_between_pages_resolve(site):
    """Every relative link and picture of every page points at a file of the
    site, and a link's #anchor at an element of that page."""
    pages = {
        path.relative_to(site).as_posix(): _Page(path.read_text(encoding="utf-8"))
        for path in site.rglob("*.html")
    }
    ids = {name: page.ids() for name, page in pages.items()}
    broken = []
    for name, page in pages.items():
        for tag, attributes in page.elements:
            ref = attributes.get("href") if tag in ("a", "link") else attributes.get("src")
            if not ref or urllib.parse.urlsplit(ref).scheme or ref.startswith(("//", "mailto:")):
                continue
            path, _, anchor = ref.partition("#")
            path = path.partition("?")[0]  # _static/furo.css?v=...: a cache buster
            target = (Path(name).parent / urllib.parse.unquote(path)).as_posix() if path else name
            target = os.path.normpath(target)
            if not (site / target).exists():
                broken.append(f"{name}: {ref}")
            elif anchor and target.endswith(".html") and anchor not in ids.get(target, set()):
                broken.append(f"{name}: {ref} (no #{anchor})")
    assert not broken, "\n".join(broken)


def _inventory(site: Path) -> set[str]:
    """The Python objects the site documents, from its objects.inv."""
    raw = (site / "objects.inv").read_bytes()
    body = raw.split(b"\n", 4)[4]  # four header lines, then zlib
    names = set()
    for line in zlib.decompress(body).decode("utf-8").splitlines():
        name, role = line.split(" ", 2)[:2]
        if role.startswith("py:"):
            names.add(name)
    return names


def test_every_public_name_is_in_the_api_reference(site):
    documented = _inventory(site)
    missing = [f"no page for {name}" for name in MODULES if name not in documented]
    for module_name, name, obj in public_names():
        # documented here, where it is defined, or as the package's own
        # (agrad.compiled.compile is agrad.compile)
        places = {f"{module_name}.{name}", f"{getattr(obj, '__module__', '')}.{name}"}
        if getattr(agrad, name, None) is obj:
            places.add(f"agrad.{name}")
        if not places & documented:
            missing.append(f"{module_name}.{name}")
    assert not missing, f"not in the API reference: {missing}"
    assert {"agrad.sum", "agrad.compile"} <= documented
