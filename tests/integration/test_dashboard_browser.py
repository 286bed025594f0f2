"""The dashboard in a real browser: headless Chromium (the system's /usr/bin/chromium, which `make
test` installs) driven by Playwright, against a real `runbook serve` on 127.0.0.1.

Each test loads a page as a person would, checks what it shows, and saves a screenshot that it
then inspects: a picture of a real size, holding the pixels of the status colours it must show.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import WorkspaceFixture
from serve_helpers import TOKEN, Server

from runbook.reports.heatmap import COLORS

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (`make test` installs it)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, served: tuple[WorkspaceFixture, Server]) -> Iterator[Any]:
    """A page of a fresh browser context that opened the token link once (its session cookie)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(60_000)
    opened.goto(f"{served[1].url}/?token={TOKEN}")
    try:
        yield opened
    finally:
        context.close()


def rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def screenshot(page: Any, path: Path, *, min_bytes: int = 20_000) -> set[tuple[int, int, int]]:
    """Save a full-page screenshot; return the colours in it, after checking it is a real picture."""
    from PIL import Image

    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > min_bytes, f"{path.name} is only {path.stat().st_size} bytes"
    with Image.open(path) as image:
        assert image.width >= 1000 and image.height >= 400
        colours = image.convert("RGB").getcolors(maxcolors=1 << 24) or []
    return {colour for _, colour in colours}


def test_the_token_link_gives_a_session_and_the_live_runs_refresh(
    page: Any, served: tuple[WorkspaceFixture, Server], tmp_path: Path
) -> None:
    url = served[1].url
    assert page.url == f"{url}/"  # the token left the address bar
    cookie = next(c for c in page.context.cookies() if c["name"] == "runbook_session")
    assert cookie["httpOnly"] and cookie["value"] != TOKEN
    live = page.locator("table.runs.live tr.run")
    assert live.count() == 1
    row = live.first.inner_text()
    assert "slow" in row and "running" in row and "alive" in row and "PID" in row
    assert "/4 (" in row  # progress over the four dates
    assert "controller" in row  # the run's processes
    assert page.locator("table.runs:not(.live) tr.run").count() >= 2
    first = page.locator(".updated").get_attribute("data-updated")
    page.wait_for_function(
        "first => document.querySelector('.updated').dataset.updated !== first", arg=first, timeout=30_000
    )  # the live part was fetched again and replaced
    colours = screenshot(page, tmp_path / "runs.png", min_bytes=10_000)
    assert rgb(COLORS["succeeded"]) in colours  # the finished runs' progress bars


def test_one_run_shows_processors_failures_by_error_and_events(
    page: Any, served: tuple[WorkspaceFixture, Server], tmp_path: Path
) -> None:
    page.goto(f"{served[1].url}/runs/1")
    assert "Run 1" in page.locator("h1").inner_text() and "failed" in page.locator("h1").inner_text()
    processors = page.locator("table.procs-table tbody tr").all_inner_texts()
    assert [line.split("\t")[0] for line in processors] == ["base", "derived"]
    failure = page.locator("section.failure").first
    assert "base: ValueError: boom on 2026-01-06" in failure.locator("h3").inner_text()
    assert "exit code 3" in failure.inner_text() and not failure.locator("pre").is_visible()
    failure.locator("summary").click()
    assert "ValueError: boom on 2026-01-06" in failure.locator("pre").inner_text()
    blocked = page.locator("h2:text-is('Blocked') + ul").inner_text()
    assert blocked.startswith("derived: 1 task on 2026-01-06")
    assert page.locator("table.events tbody tr").count() >= 3
    colours = screenshot(page, tmp_path / "run.png")
    assert {rgb(COLORS["succeeded"]), rgb(COLORS["failed"])} <= colours


def test_the_heat_map_shows_every_state_and_a_click_shows_the_date(
    page: Any, served: tuple[WorkspaceFixture, Server], tmp_path: Path
) -> None:
    url = served[1].url
    page.goto(f"{url}/heatmap?start=2026-01-01&end=2026-01-20")
    states = set(
        page.locator("svg.heatmap rect[data-state]").evaluate_all("rs => rs.map(r => r.dataset.state)")
    )
    expected = {
        "succeeded",
        "stale",
        "failed",
        "blocked",
        "off_day",
        "bootstrap",
        "never_built",
        "running",
        "queued",
    }
    assert states == expected
    legend = page.locator("ul.legend").inner_text()
    assert "failed: 1" in legend and "skipped: off day" in legend
    colours = screenshot(page, tmp_path / "heatmap.png")
    missing = [state for state in expected if rgb(COLORS[state]) not in colours]
    assert not missing, f"colours of {missing} are not on the screenshot"

    page.locator("ul.legend li[data-state='failed']").click()  # only the failed cells stand out
    faded = page.locator("svg.heatmap rect[data-state]").evaluate_all(
        "rs => rs.filter(r => r.style.opacity === '0.15').map(r => r.dataset.state)"
    )
    assert faded and "failed" not in faded and set(faded) == expected - {"failed"}
    page.locator("ul.legend li[data-state='failed']").click()
    assert page.locator("svg.heatmap rect[style*='opacity: 0.15']").count() == 0

    failed = page.locator("g.hm-row[data-processor='base'] rect[data-state='failed']")
    failed.hover()
    assert page.locator("#hm-hover").inner_text() == "base · 2026-01-06 · failed"
    failed.click()
    title = page.locator("#cell h2.cell-title")
    title.wait_for()
    assert title.inner_text() == "base on 2026-01-06: failed"
    cell = page.locator("#cell")
    assert "ValueError: boom on 2026-01-06" in cell.locator("pre.error-tail").inner_text()
    log = cell.locator("pre.log").inner_text()
    assert "base 2026-01-06 attempt 1" in log and "boom on 2026-01-06" in log
    assert cell.locator("table.attempts tbody tr").count() == 1
    assert "processor=base" in page.url and "date=2026-01-06" in page.url
    detail = screenshot(page, tmp_path / "heatmap-cell.png")
    assert rgb(COLORS["failed"]) in detail

    # A stale date of a long span: the click picks the date under the pointer.
    span = page.locator("g.hm-row[data-processor='base'] rect[data-state='stale']").first
    box = span.bounding_box()
    days = int(span.get_attribute("data-n"))
    page.mouse.click(box["x"] + box["width"] * (1.5 / days), box["y"] + box["height"] / 2)
    page.wait_for_function("() => document.querySelector('#cell h2').innerText.includes('2026-01-02')")
    assert page.locator("#cell h2").inner_text() == "base on 2026-01-02: stale (built by older code)"

    # The page opens with that cell shown again, and a month label zooms in.
    page.reload()
    page.locator("#cell h2.cell-title").wait_for()
    assert "2026-01-02" in page.locator("#cell h2").inner_text()
    page.locator("svg.heatmap text.hm-tick").first.click()
    page.wait_for_url("**/heatmap?start=2026-01-01&end=2026-01-31")
    assert page.locator("input[name=end]").input_value() == "2026-01-31"


def test_checks_are_charted_over_time(
    page: Any, served: tuple[WorkspaceFixture, Server], tmp_path: Path
) -> None:
    page.goto(f"{served[1].url}/checks")
    card = page.locator("section.check-card").first
    assert "derived.answer" in card.locator("h2").inner_text() and "passing" in card.inner_text()
    charts = card.locator("svg.chart")
    assert charts.count() == 2  # n and pct
    assert card.locator("svg.chart circle.pass").count() >= 4  # two results, each in two charts
    assert "threshold 40" in card.inner_text()
    colours = screenshot(page, tmp_path / "checks.png", min_bytes=8_000)
    assert rgb(COLORS["succeeded"]) in colours


def test_the_handoff_reads_as_html_with_its_heat_map(
    page: Any, served: tuple[WorkspaceFixture, Server], tmp_path: Path
) -> None:
    page.goto(f"{served[1].url}/handoff")
    assert "Handoff — serve-test" in page.locator("article.report h1").inner_text()
    assert page.locator("article.report table").count() >= 2
    picture = page.locator("article.report span.picture svg")
    assert picture.locator("rect").count() > 10  # the report's heat map, drawn into the page
    assert "serve-test: every processor by date" in (picture.text_content() or "")
    assert "runbook logs " in page.locator("article.report").inner_text()  # the live run's commands
    colours = screenshot(page, tmp_path / "handoff.png")
    assert {rgb(COLORS["failed"]), rgb(COLORS["stale"])} <= colours
