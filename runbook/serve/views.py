"""The dashboard's pages: runs (live, refreshed every few seconds), one run, the heat map and its
cells, checks over time, and the handoff as HTML.

``?fragment=1`` on the runs and run pages answers only the part that refreshes, which the page's
script fetches every :data:`REFRESH_SECONDS`.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runbook.clock import utcnow
from runbook.formatting import iso_utc
from runbook.kinds import ACTIVE_RUN_STATUSES, RunStatus
from runbook.reports.heatmap import heatmap_svg
from runbook.serve.charts import metric_chart, threshold_of
from runbook.serve.dashboard import Dashboard, get, guarded, parse_date, parse_int, required_cell

if TYPE_CHECKING:
    from runbook.app import App

REFRESH_SECONDS = 5
INLINE_PICTURE = "runbook-inline-heatmap.svg"
EVENTS_SHOWN = 200
PRESETS = (("2 years", 731), ("1 year", 365), ("90 days", 90), ("30 days", 30))
LIVE = (*ACTIVE_RUN_STATUSES, RunStatus.INTERRUPTED)


def routes(dashboard: Dashboard) -> list[Route]:
    d = dashboard
    wrap = guarded(d, api=False)

    def fragment(request: Request, page: str, part: str) -> str:
        return part if request.query_params.get("fragment") else page

    @wrap
    def runs(request: Request, app: App) -> Response:
        recent = parse_int(request, "recent", 10, 0, 500)
        found = d.data(app.status(recent=recent))
        live = [run for run in found if run["status"] in LIVE]
        done = [run for run in found if run["status"] not in LIVE]
        return d.page(
            fragment(request, "runs.html.j2", "_runs.html.j2"),
            live=live, done=done, recent=recent, refresh=REFRESH_SECONDS, updated=iso_utc(utcnow()),
        )  # fmt: skip

    @wrap
    def run(request: Request, app: App) -> Response:
        detail = d.data(app.run_detail(int(request.path_params["run_id"])))
        events = detail["events"]
        return d.page(
            fragment(request, "run.html.j2", "_run.html.j2"),
            run=detail["run"], failures=detail["failures"], blocked=detail["blocked"], checks=detail["checks"],
            events=events[-EVENTS_SHOWN:], events_omitted=max(len(events) - EVENTS_SHOWN, 0),
            refresh=REFRESH_SECONDS if detail["run"]["status"] in ACTIVE_RUN_STATUSES else 0,
            updated=iso_utc(utcnow()),
        )  # fmt: skip

    @wrap
    def heatmap(request: Request, app: App) -> Response:
        from runbook.snapshots.coverage import coverage_range

        start, end = parse_date(request, "start"), parse_date(request, "end")
        data = d.plain(app.heatmap(start, end, calendar_for=d.calendar_for(app), versions=d.reads.versions()))
        whole = coverage_range(app.config, app.reader(), None, None)
        svg = heatmap_svg(data, plot_width=1100, min_day_width=1.5, interactive=True, legend=False)
        first, last = dt.date.fromisoformat(data["start"]), dt.date.fromisoformat(data["end"])
        return d.page(
            "heatmap.html.j2", heatmap=data, svg=Markup(svg), links=range_links(first, last, whole),  # noqa: S704 - escaped by heatmap_svg
            selected=request.query_params.get("processor", ""), selected_date=request.query_params.get("date", ""),
        )  # fmt: skip

    @wrap
    def cell(request: Request, app: App) -> Response:
        processor, day = required_cell(request)
        found = app.heatmap_cell(
            processor, day, calendar_for=d.calendar_for(app), versions=d.reads.versions()
        )
        return d.page("_cell.html.j2", cell=d.data(found))

    @wrap
    def picture(request: Request, app: App) -> Response:
        start, end = parse_date(request, "start"), parse_date(request, "end")
        found = app.heatmap(start, end, calendar_for=d.calendar_for(app), versions=d.reads.versions())
        svg = heatmap_svg(d.plain(found), title=f"{d.workspace.config.name}: every processor by date")
        return Response(svg, media_type="image/svg+xml", headers={"cache-control": "no-store"})

    @wrap
    def checks(request: Request, app: App) -> Response:
        limit = parse_int(request, "limit", 30, 2, 1000)
        cards = [check_card(entry) for entry in d.data(app.check_history(None, None, limit))]
        return d.page("checks.html.j2", cards=cards, limit=limit)

    @wrap
    def handoff(request: Request, app: App) -> Response:
        # Kept while the store, the code versions and the templates stay the same (at most a
        # minute, see runbook.serve.services.Kept); ?refresh=1 renders it again regardless.
        versions = d.reads.versions()
        key = d.handoff_key(app, versions)
        refresh = request.query_params.get("refresh") in ("1", "true", "yes")
        kept = d.handoffs.get(key) if key is not None and not refresh else None
        if kept is None:
            generated_at = utcnow()
            html = handoff_html(app, versions, generated_at)
            if key is not None:
                d.handoffs.put(key, html, generated_at)
        else:
            html, generated_at = kept
        response = d.page(
            "handoff.html.j2",
            report=Markup(html),  # noqa: S704 - see markdown_html
            generated=generated_at.astimezone(d.tz).strftime("%Y-%m-%d %H:%M:%S %Z"),
            kept=kept is not None,
            age=max(int((utcnow() - generated_at).total_seconds()), 0),
            max_age=int(d.handoffs.max_age),
        )
        response.headers["server-timing"] = f'cache;desc="{"hit" if kept is not None else "miss"}"'
        return response

    def handoff_html(app: App, versions: dict[str, str] | None, now: dt.datetime) -> str:
        """The handoff as ``runbook handoff`` would write it at ``now``, as HTML with its heat map."""
        from runbook.reports import report_text

        context, tz = app.handoff_context(
            tz_name=d.zone, now=now, calendar_for=d.calendar_for(app), versions=versions
        )
        picture = None
        if context["heatmap"] is not None:
            # Drawn into the page where the report links its picture: no second request.
            context["heatmap_image"] = INLINE_PICTURE
            picture = heatmap_svg(
                context["heatmap"], title=f"{d.workspace.config.name}: every processor by date"
            )
        html = markdown_html(report_text(context, templates_dir=app.workspace.templates_dir, tz=tz))
        if picture is not None:
            html = re.sub(
                f'<img src="{INLINE_PICTURE}"[^>]*>',
                lambda _: f"<span class='picture'>{picture}</span>",
                html,
            )
        return html

    return [
        get("/", runs, "runs"),
        get("/runs/{run_id:int}", run, "run"),
        get("/heatmap", heatmap, "heatmap"),
        get("/heatmap/cell", cell, "heatmap_cell"),
        get("/heatmap.svg", picture, "heatmap_svg"),
        get("/checks", checks, "checks"),
        get("/handoff", handoff, "handoff"),
    ]


def range_links(first: dt.date, last: dt.date, whole: tuple[dt.date, dt.date]) -> list[tuple[str, str, bool]]:
    """(label, query, current) of the heat map's range controls: the whole range, presets that
    end at the shown end, and the windows before and after the shown one."""
    from runbook.snapshots.heatmap import MAX_DAYS

    def query(start: dt.date, end: dt.date) -> str:
        return f"?start={start}&end={end}"

    days = (last - first).days + 1
    links = []
    if (whole[1] - whole[0]).days < MAX_DAYS:
        links.append(("whole range", query(*whole), (first, last) == whole))
    for label, width in PRESETS:
        start = last - dt.timedelta(days=width - 1)
        links.append((label, query(start, last), start == first))
    step = dt.timedelta(days=days)
    links.append(("← earlier", query(first - step, last - step), False))
    if last < whole[1]:
        links.append(("later →", query(first + step, last + step), False))
    return links


def check_card(entry: dict[str, Any]) -> dict[str, Any]:
    """One check's results over time: its newest verdict and a chart per numeric metric."""
    results = entry["results"]
    newest = results[-1]
    labels = [f"{(r['at'] or '')[:16].replace('T', ' ')}, run {r['run_id'] or '—'}" for r in results]
    passed = [bool(r["passed"]) for r in results]
    charts = [
        {
            "metric": name,
            "last": values[-1],
            "threshold": threshold_of(name, newest["conditions"]),
            "svg": Markup(  # noqa: S704 - metric_chart escapes its values
                metric_chart(name, values, passed, labels, threshold_of(name, newest["conditions"]))
            ),
        }
        for name, values in entry["series"].items()
    ]
    return {**entry, "newest": newest, "charts": charts, "passed_count": sum(passed), "total": len(results)}


def markdown_html(markdown: str) -> str:
    """The handoff's Markdown as HTML. Raw HTML in it is shown as text (the report's own values are
    neutralized already); only the ``<br>`` the report puts in table cells becomes a line break."""
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return str(html.replace("&lt;br&gt;", "<br>"))
