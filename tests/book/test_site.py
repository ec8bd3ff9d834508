"""The built site opens in headless Chromium: every toc page loads, its images load, and it shows no error output.

Build the site first with `python -m ihlib.book`. The site is `$IHBOOK_SITE` or `_build/html`; without it the
tests skip, except in CI (`CI=true`), where they fail. Chromium is Debian's package (`apt-get install chromium`),
driven by Playwright through `executable_path`; Playwright's own browser download is not used.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from pathlib import Path

import pytest

from ihlib.book.toc import page_path, toc_files

pytestmark = pytest.mark.slow  # executes notebooks or draws figures

REPO = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("IHBOOK_SITE", REPO / "_build" / "html")).resolve()
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = toc_files(REPO)
NOTEBOOK_PAGES = [entry for entry in PAGES if page_path(REPO, entry).suffix == ".ipynb"]
FIGURE_PAGES = [entry for entry in NOTEBOOK_PAGES if Path(entry).stem[:2].isdigit()]  # chapters, not the verdicts
ERROR_LINE = re.compile(r"\b[A-Z]\w*(Error|Exception): ")
PROGRESS_BAR = re.compile(
    r"\d+%\|[^|\n]*\||\d[\d.]*\s?(?:it/s|s/it)\]"
)  # tqdm: ` 40%|####  | 2/5 [00:01<00:02, 1.9it/s]`
WARNING_LINE = re.compile(
    r"\b[A-Za-z]*Warning: "
)  # `UserWarning: ...`, `file.py:3: FutureWarning: ...`, `Warning: ...`
INDEX_CELLS = (
    ".cell_output table tbody th"  # pandas writes its index as <th> in the body; `hide(axis="index")` drops it
)


def missing_site_reason() -> str | None:
    """Return why the site cannot be tested, or None when `SITE/index.html` exists."""
    if (SITE / "index.html").is_file():
        return None
    return f"no built site at {SITE} (build it with `python -m ihlib.book`, or set IHBOOK_SITE)"


@pytest.fixture(scope="module")
def site_url():
    """Serve the built site over HTTP on 127.0.0.1 from a thread; yield its base URL."""
    reason = missing_site_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    handler = functools.partial(QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static file handler that does not log every request."""

    def log_message(self, format: str, *args: object) -> None:
        """Drop the per-request log line."""


@pytest.fixture(scope="module")
def browser_page(site_url, tmp_path_factory):
    """Open headless Debian Chromium with a fresh user data dir; yield one page."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's package with `apt-get install -y chromium`.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        page = context.new_page()
        yield page
        context.close()


def open_page(page, url: str) -> None:
    """Load `url`, fail on an HTTP error, and wait until every image has finished loading or failing."""
    response = page.goto(url, wait_until="load")
    assert response is not None and response.ok, f"{url} answered {response.status if response else 'nothing'}"
    page.wait_for_function("Array.from(document.images).every(img => img.complete)", timeout=15_000)


def test_index_redirects_to_the_first_page(browser_page, site_url):
    """index.html loads and lands on the toc's root page."""
    open_page(browser_page, f"{site_url}/index.html")
    browser_page.wait_for_url(f"**/{PAGES[0]}.html", timeout=10_000)


@pytest.mark.parametrize("entry", PAGES)
def test_page_loads_with_all_images(browser_page, site_url, entry):
    """Every toc page loads and each of its images is served by the site and has a non-zero natural width."""
    open_page(browser_page, f"{site_url}/{entry}.html")
    images = browser_page.evaluate("Array.from(document.images).map(img => [img.src, img.naturalWidth])")
    broken = [src for src, width in images if width == 0]
    assert not broken, f"{entry}: images that did not load: {broken}"
    remote = [src for src, _ in images if not src.startswith(site_url)]
    assert not remote, f"{entry}: images not embedded in the site: {remote}"
    if entry in FIGURE_PAGES:
        assert images, f"{entry}: a chapter page shows no figure"


@pytest.mark.parametrize("entry", PAGES)
def test_page_shows_no_error_output(browser_page, site_url, entry):
    """No page shows a Python traceback, papermill's error banner, or an error line in a cell output."""
    open_page(browser_page, f"{site_url}/{entry}.html")
    text = browser_page.inner_text("body")
    assert "Traceback (most recent call last)" not in text, f"{entry} shows a Python traceback"
    assert "An Exception was encountered" not in text, f"{entry} shows papermill's error banner"
    assert browser_page.locator(".output.traceback, .output.error").count() == 0, f"{entry} has an error output"
    outputs = browser_page.locator(".cell_output").all_inner_texts()
    errors = [line for output in outputs for line in output.splitlines() if ERROR_LINE.search(line)]
    assert not errors, f"{entry}: cell outputs with errors: {errors}"


def clutter_lines(output_text: str) -> list[str]:
    """Lines of a cell's output text that show a tqdm progress bar or a warning."""
    return [line for line in output_text.splitlines() if PROGRESS_BAR.search(line) or WARNING_LINE.search(line)]


def test_clutter_patterns_flag_progress_bars_and_warnings_but_not_prose():
    """The clutter check catches tqdm bars and warnings, and passes numbers, percentages and prose about warnings."""
    flagged = [
        "Loading weights: 100%|##########| 40/40 [00:00<00:00, 7540.66it/s]",
        "shuffles:  40%|####      | 2/5 [00:03<00:04, 1.52s/it]",
        "/work/ihlib/x.py:12: UserWarning: fewer heads than K",
        "FutureWarning: the default will change",
        "Warning: only 3 heads count as induction heads",
    ]
    passed = [
        "top-1 error 0.004 (95% interval 0.002 to 0.007)",
        "40% of the heads | 3 layers",
        "the library's own warning is silenced",
        "speed: 12 it/s on average",
    ]
    assert clutter_lines("\n".join(flagged + passed)) == flagged


@pytest.mark.parametrize("entry", PAGES)
def test_page_shows_no_progress_bar_warning_or_table_index(browser_page, site_url, entry):
    """No cell output shows a tqdm bar or a warning, and no rendered table carries the pandas index."""
    open_page(browser_page, f"{site_url}/{entry}.html")
    outputs = browser_page.locator(".cell_output").all_inner_texts()
    clutter = [line for output in outputs for line in clutter_lines(output)]
    assert not clutter, f"{entry}: progress bars or warnings in cell outputs: {clutter[:5]}"
    index_cells = browser_page.locator(INDEX_CELLS).all_inner_texts()
    assert not index_cells, f"{entry}: tables show a pandas index (first cells: {index_cells[:5]})"


@pytest.mark.parametrize("entry", PAGES)
def test_screenshot_of_each_page(browser_page, site_url, entry):
    """A full-page screenshot at 1280 px of every toc page is saved next to the site, in `screenshots/`."""
    open_page(browser_page, f"{site_url}/{entry}.html")
    target = SITE.parent / "screenshots" / f"{Path(entry).name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    browser_page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000


DOWNLOAD_LINK = re.compile(r'<a class="reference download internal" download="" href="([^"]+)"')


@pytest.mark.parametrize("entry", FIGURE_PAGES)
def test_chapter_offers_its_data_and_executed_notebook_by_links_that_resolve(site_url, entry):
    """Each chapter page links its saved JSON or NPZ files and its executed notebook, and the site holds each file."""
    page = SITE / f"{entry}.html"
    links = DOWNLOAD_LINK.findall(page.read_text())
    suffixes = {Path(link).suffix for link in links}
    assert ".ipynb" in suffixes and suffixes & {".json", ".npz"}, f"{entry}: download links {links}"
    missing = [link for link in links if not (page.parent / link).resolve().is_file()]
    assert not missing, f"{entry}: download links to files the site lacks: {missing}"


@pytest.mark.parametrize("entry", FIGURE_PAGES)
def test_chapter_page_has_objectives_and_exercises_with_folded_answers(browser_page, site_url, entry):
    """A chapter page shows an Objectives section and an Exercises section whose answers are folded (<details>)."""
    open_page(browser_page, f"{site_url}/{entry}.html")
    assert browser_page.locator("section#objectives li").count() >= 2, f"{entry}: no objectives list"
    folded = browser_page.locator("section#exercises details:not([open])")
    assert folded.count() >= 2, f"{entry}: fewer than 2 folded answers in the exercises"


def test_attention_view_of_chapter_0_reacts_to_hover_without_network(browser_page, site_url):
    """With every request outside the local site aborted, hovering a token of chapter 0's attention view makes it the
    query, and hovering a head selects it."""
    entry = next(entry for entry in FIGURE_PAGES if Path(entry).stem.startswith("00_"))
    context, outside = browser_page.context, []

    def local_only(route):
        if route.request.url.startswith(site_url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", local_only)
    try:
        open_page(browser_page, f"{site_url}/{entry}.html")
        view = browser_page.locator(".ihav").first
        assert view.count() == 1, f"{entry}: no attention view"
        view.scroll_into_view_if_needed()
        token = view.locator(".ihav-token").nth(3)
        token.hover()
        assert view.get_attribute("data-query") == "3"
        view.locator(".ihav-head").nth(1).hover()
        assert view.get_attribute("data-selected") == "0,1"
        assert "token 3" in view.locator(".ihav-status").inner_text()
    finally:
        context.unroute("**/*")


VISIBLE_WORD_LIMIT = 1_500  # words a student reads on a claim chapter before opening anything
CLAIM_PAGES = [entry for entry in FIGURE_PAGES if Path(entry).stem[:2] in {"01", "02", "03", "04"}]
VISIBLE_WORDS = """() => {
  const article = document.querySelector("article.bd-article") || document.querySelector("main");
  const copy = article.cloneNode(true);
  copy.querySelectorAll("details, .cell_input, pre, table, script, style, .headerlink, .ihav").forEach(e => e.remove());
  return copy.textContent.split(/\\s+/).filter(word => /[A-Za-z0-9]/.test(word)).length;
}"""
TABLE_WIDTHS = """() => {
  document.querySelectorAll("details").forEach(d => { d.open = true; });
  return Array.from(document.querySelectorAll("article table")).map(t => {
    const area = t.closest(".cell_output, .output") || t.closest("article");
    return [Math.round(t.getBoundingClientRect().width), Math.floor(area.clientWidth), (t.querySelector("tr") || t)
      .innerText.slice(0, 80)];
  });
}"""
TEXT_COLUMN_PX = 720  # the article column of sphinx-book-theme at a 1280 px window (a cell's output area: ~688 px)
BAD_CELL = re.compile(r"^(nan|NaN|None|[+-]?\d+\.000)$")


@pytest.mark.parametrize("entry", CLAIM_PAGES)
def test_claim_chapter_shows_at_most_1500_words_outside_folds_and_code(browser_page, site_url, entry):
    """A claim chapter reads in one sitting: its text outside folded sections, code and tables is short."""
    open_page(browser_page, f"{site_url}/{entry}.html")
    words = browser_page.evaluate(VISIBLE_WORDS)
    assert words <= VISIBLE_WORD_LIMIT, f"{entry}: {words} visible words (at most {VISIBLE_WORD_LIMIT}): fold details"


@pytest.mark.parametrize("entry", NOTEBOOK_PAGES)
def test_no_table_is_wider_than_the_text_column_at_1280_px(browser_page, site_url, entry):
    """Every table, folded ones opened, fits the 720 px text column of a 1280 px window and the output area that
    holds it (a cell's output is narrower than the column: a table as wide as the column is cut at its edge)."""
    open_page(browser_page, f"{site_url}/{entry}.html")
    widths = browser_page.evaluate(TABLE_WIDTHS)
    wide = [(width, area, head) for width, area, head in widths if width > min(area, TEXT_COLUMN_PX)]
    assert not wide, f"{entry}: tables wider than their output area or {TEXT_COLUMN_PX} px (width, area, row): {wide}"


def test_bad_cell_pattern_flags_missing_values_and_padded_zeros_only():
    """`nan`, `None` and `1.000` are flagged; 0.004, 1.0, 100 and "n/a" are not."""
    assert [c for c in ["nan", "None", "1.000", "-0.000", "0.004", "1.0", "100", "n/a"] if BAD_CELL.match(c)] == [
        "nan",
        "None",
        "1.000",
        "-0.000",
    ]


@pytest.mark.parametrize("entry", NOTEBOOK_PAGES)
def test_no_table_cell_reads_nan_none_or_a_padded_whole_number(browser_page, site_url, entry):
    """No table cell shows `nan`, `None` or `x.000`: missing values read "n/a", whole numbers without decimals."""
    open_page(browser_page, f"{site_url}/{entry}.html")
    cells = browser_page.locator("article table td").all_inner_texts()
    bad = [cell.strip() for cell in cells if BAD_CELL.match(cell.strip())]
    assert not bad, f"{entry}: table cells {bad[:10]}"
