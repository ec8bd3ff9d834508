"""The interactive attention view reacts in headless Chromium with every network request blocked: hovering a token
makes it the query, hovering a head selects it, and the strongest key shown is the data's."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import random_gpt2

from ihlib.heads.head_table import head_table
from ihlib.heads.scoring import head_scores
from ihlib.report.attention_gallery import every_head_example
from ihlib.report.attention_view import attention_view_html, view_data

pytestmark = pytest.mark.slow  # starts a browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


@pytest.fixture(scope="module")
def offline_page(tmp_path_factory):
    """A Chromium page that aborts every request that is not a local file; skips without Chromium (fails in CI)."""
    if not Path(CHROMIUM).is_file():
        reason = f"{CHROMIUM} is missing: install Debian's package with `make chromium`."
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
            offline=True,
        )
        blocked: list[str] = []

        def only_files(route):
            if route.request.url.startswith("file:"):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", only_files)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page, blocked, errors
        context.close()


def test_hovering_a_token_and_a_head_updates_the_view_offline(offline_page, tmp_path):
    page, blocked, errors = offline_page
    model = random_gpt2(n_layer=2, n_head=4)
    example = every_head_example(model, seg_len=6, rep=3)
    kinds = head_table(head_scores(model, batch_size=2, seg_len=6, rep=3))
    att = np.array(view_data(example, kinds, selected=[1, 2])["att"])
    path = tmp_path / "view.html"
    path.write_text(f"<!doctype html><html><body>{attention_view_html(example, kinds, selected=[1, 2])}</body></html>")
    page.goto(path.as_uri(), wait_until="load")
    view = page.locator(".ihav")
    assert view.get_attribute("data-query") == "17" and view.get_attribute("data-selected") == "1,2"
    page.locator(".ihav-token").nth(9).hover()
    assert view.get_attribute("data-query") == "9"
    assert view.get_attribute("data-strongest") == str(int(np.argmax(att[1, 2, 9])))
    cells = page.locator(".ihav-head").nth(0).locator(".ihav-cell")
    assert cells.count() == 18
    shade = cells.nth(0).evaluate("cell => getComputedStyle(cell).backgroundColor")
    alpha = float(shade.rstrip(")").split(",")[3]) if shade.startswith("rgba(31, 119, 180") else -1.0
    assert abs(alpha - att[0, 0, 9, 0] / 100) < 0.006, f"L0H0's cell for key 0 reads {shade}"
    page.locator(".ihav-head").nth(1).hover()
    assert view.get_attribute("data-selected") == "0,1"
    assert view.get_attribute("data-strongest") == str(int(np.argmax(att[0, 1, 9])))
    assert "token 9" in page.locator(".ihav-status").inner_text()
    assert not errors and not blocked, f"script errors {errors}, network requests {blocked}"
