"""Rendering the handoff data with Jinja templates.

Templates are looked up in the workspace's ``templates/`` folder first, then in the ones shipped
in the package (``runbook/templates``); ``builtin/NAME`` always names the shipped one, so a
workspace template can extend the template it replaces::

    {% extends "builtin/handoff.md.j2" %}
    {% block notes %}## Lessons{{ super() }}{% endblock %}

Undefined variables are errors (``StrictUndefined``). The filters make any value safe where it
lands: ``cell`` in a Markdown table cell, ``text`` in a line of prose, ``code`` in an inline code
span, ``fence`` in a fenced block; ``when``/``clock`` show ISO UTC times in the report's time
zone, ``duration`` seconds as ``2h05m``. Rendering is deterministic: the same data, time zone and
templates give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import (
    BytecodeCache,
    ChoiceLoader,
    Environment,
    FileSystemBytecodeCache,
    FileSystemLoader,
    PackageLoader,
    PrefixLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
)

from runbook.errors import ConfigError, UsageError
from runbook.formatting import bursts, duration, number, plural, span

TEMPLATES = {"markdown": "handoff.md.j2", "brief": "brief.md.j2"}
BRIEF_MAX_LINES = 40
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f]")
_NEWLINES = re.compile(r"\r\n|\r|\n")
_MERMAID_UNSAFE = re.compile(r"[:;#\n\r`]")
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")


def resolve_timezone(name: str | None, environ: dict[str, str] | None = None) -> tuple[dt.tzinfo, str]:
    """(the time zone, its name) from ``--tz``, else ``TZ``, else the system's, else UTC."""
    if name:
        try:
            return ZoneInfo(name), name
        except (ZoneInfoNotFoundError, ValueError):
            raise UsageError(
                f"unknown time zone {name!r} (use an IANA name such as Europe/Paris or UTC)"
            ) from None
    candidates = [(environ or {}).get("TZ", "").lstrip(":")]
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        candidates.append(str(localtime.resolve()).partition("zoneinfo/")[2])
    for candidate in candidates:
        if candidate:
            try:
                return ZoneInfo(candidate), candidate
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return dt.UTC, "UTC"


def _strip(value: Any) -> str:
    return _CONTROL.sub("", str(value).replace("\t", "    "))


def _html(text: str) -> str:
    """Neutralize what Markdown renderers take for HTML (tags, comments, entities), and only that,
    so ``a >= 45`` and ``x -> y`` stay readable in the raw text."""
    return _TAG_START.sub("&lt;", _ENTITY.sub("&amp;", text))


def cell(value: Any, width: int | None = None) -> str:
    """``value`` as one Markdown table cell: pipes, newlines, backticks and HTML cannot break out."""
    if value is None or value == "":
        return "—"
    text = _strip(value).strip()
    if width is not None and len(text) > width:
        text = text[: width - 1].rstrip() + "…"
    text = _html(text).replace("\\", "&#92;").replace("|", "\\|").replace("`", "\\`")
    return _NEWLINES.sub("<br>", text)


def text(value: Any) -> str:
    """``value`` as one line of Markdown prose: HTML escaped, newlines folded into spaces."""
    if value is None:
        return ""
    return _NEWLINES.sub(" ", _html(_strip(value)).strip())


def code(value: Any, in_table: bool = False) -> str:
    """``value`` as an inline code span, however many backticks it holds.

    In a table cell a backslash cannot be shown inside a code span without ending the cell at a
    following pipe (GFM reads ``\\|`` as an escaped backslash and a cell border), so such a
    value becomes a plain escaped cell instead.
    """
    content = _NEWLINES.sub(" ", _strip(value)).strip()
    if in_table and "\\" in content:
        return cell(value)
    longest = max((len(run) for run in re.findall(r"`+", content)), default=0)
    ticks = "`" * (longest + 1)
    if content.startswith("`") or content.endswith("`"):
        content = f" {content} "
    if in_table:
        content = content.replace("|", "\\|")
    return f"{ticks}{content}{ticks}"


def fence(value: Any, lang: str = "") -> str:
    """``value`` in a fenced code block whose fence is longer than any backtick run inside."""
    content = _strip(value).rstrip("\n")
    content = _NEWLINES.sub("\n", content)
    longest = max((len(run) for run in re.findall(r"`{3,}", content)), default=2)
    ticks = "`" * (longest + 1)
    return f"{ticks}{lang}\n{content}\n{ticks}"


def metric(value: Any) -> str:
    """A check's metric or threshold, without float noise (98.69999999999999 -> 98.7)."""
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return cell(value)


def percent(value: Any) -> str:
    """A percentage already rounded by the read model (``85.3`` -> ``85.3%``)."""
    return "—" if value is None else f"{float(value):.1f}%"


def mermaid(value: Any) -> str:
    """A label that cannot break a Mermaid gantt line (no ``:``, ``;``, ``#``, newlines)."""
    return _MERMAID_UNSAFE.sub(" ", _strip(value)).strip() or "-"


def time_filters(tz: dt.tzinfo) -> dict[str, Callable[..., str]]:
    """Filters that show ISO UTC strings in ``tz``."""

    def local(value: str) -> dt.datetime:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(tz)

    def when(value: str | None, zone: bool = True) -> str:
        if not value:
            return "—"
        moment = local(value)
        return moment.strftime("%Y-%m-%d %H:%M") + (f" {moment.tzname()}" if zone else "")

    def clock(value: str | None) -> str:
        return local(value).strftime("%H:%M") if value else "—"

    def gantt_time(value: str) -> str:
        return local(value).strftime("%Y-%m-%d %H:%M:%S")

    def zone_name(value: str) -> str:
        return local(value).tzname() or ""

    def day(value: str) -> str:
        return local(value).strftime("%Y-%m-%d")

    return {"when": when, "clock": clock, "gantt_time": gantt_time, "zone": zone_name, "day": day}


def _bytecode_cache() -> BytecodeCache | None:
    """Compiled templates kept in the user's cache folder (``$XDG_CACHE_HOME/runbook``), keyed by
    each template's source, so a report does not spend a third of a second compiling Jinja.
    Without a writable cache folder, templates are compiled each time."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    folder = Path(base) / "runbook" / "jinja"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return FileSystemBytecodeCache(str(folder)) if os.access(folder, os.W_OK) else None


@functools.lru_cache(maxsize=16)
def environment(templates_dir: Path | None, tz: dt.tzinfo) -> Environment:
    """The Jinja environment: workspace templates first, then runbook's (also as ``builtin/``).

    One per folder and time zone for the life of the process (``runbook serve`` renders the
    handoff again and again): its compiled templates are kept, and a workspace template edited
    meanwhile is compiled again (Jinja looks at the file's modification time)."""
    builtin = PackageLoader("runbook", "templates")
    loaders: list[Any] = [FileSystemLoader(str(templates_dir))] if templates_dir else []
    loaders += [builtin, PrefixLoader({"builtin": builtin})]
    env = Environment(
        loader=ChoiceLoader(loaders),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        bytecode_cache=_bytecode_cache(),
    )
    env.filters.update(
        cell=cell, text=text, code=code, fence=fence, duration=duration, number=number, metric=metric, percent=percent,
        mermaid=mermaid, plural=plural, span=span, bursts=bursts, **time_filters(tz),
    )  # fmt: skip
    return env


def render(
    context: dict[str, Any],
    *,
    template: str,
    tz: dt.tzinfo,
    templates_dir: Path | None = None,
    max_lines: int | None = None,
) -> str:
    """Render ``context`` with ``template``; with ``max_lines`` the output is cut to that many lines."""
    env = environment(templates_dir, tz)
    try:
        compiled = env.get_template(template)
    except TemplateNotFound as exc:
        where = f"{templates_dir} or " if templates_dir else ""
        raise UsageError(
            f"template {exc.name!r} not found in {where}runbook's built-in templates ({', '.join(TEMPLATES.values())})"
        ) from None
    except TemplateSyntaxError as exc:
        raise ConfigError(
            f"template syntax error: {exc.message}", file=exc.filename or exc.name, path=f"line {exc.lineno}"
        ) from None
    try:
        output = compiled.render(**context)
    except Exception as exc:  # noqa: BLE001 - a workspace template's mistake is a one-line error
        file, line = _template_position(exc, compiled.filename or template)
        message = (
            exc.message if isinstance(exc, TemplateError) and exc.message else f"{type(exc).__name__}: {exc}"
        )
        raise ConfigError(
            f"template error: {message}", file=file, path=f"line {line}" if line else None
        ) from None
    lines = tidy(output).splitlines()
    if max_lines is not None and len(lines) > max_lines:
        lines = cut_lines(lines, max_lines)
    output = "\n".join(lines) + "\n"
    return output


def cut_lines(lines: list[str], max_lines: int, keep: str = "Next:") -> list[str]:
    """At most ``max_lines`` lines: the middle is cut, never the part from the line ``keep`` on
    (what to do next), and one line says how many lines were cut and where the full report is."""
    tail_at = next((i for i, line in enumerate(lines) if line.strip() == keep), len(lines))
    tail = lines[tail_at:]
    if len(tail) > max_lines // 2:
        tail = [
            *tail[: max_lines // 2 - 1],
            f"… {len(tail) - max_lines // 2 + 1} more lines: `runbook handoff`",
        ]
    room = max_lines - len(tail) - 2  # the note and a blank line
    head = lines[:tail_at]
    cut = len(head) - room
    if cut <= 0:
        return [*head, *tail]
    while room > 0 and not head[room - 1].strip():
        room -= 1  # no blank line just before the note
    cut = len(head) - room
    return [*head[:room], f"… {cut} more lines: run `runbook handoff --out -` for the full report", "", *tail]


def tidy(markdown: str) -> str:
    """At most one blank line in a row outside fenced blocks, none at the start, one newline at the end.

    Templates stay readable (a block per section, blank lines around them) without their
    whitespace showing up in the report.
    """
    lines: list[str] = []
    fence_mark: str | None = None
    for line in markdown.splitlines():
        stripped = line.strip()
        if fence_mark is None:
            opening = re.match(r"(`{3,}|~{3,})", stripped)
            if opening:
                fence_mark = opening.group(1)
            elif not stripped and (not lines or not lines[-1].strip()):
                continue
        elif stripped.startswith(fence_mark) and stripped.strip(fence_mark[0]) == "":
            fence_mark = None
        lines.append(line.rstrip() if fence_mark is None else line)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines) + "\n"


def _template_position(exc: BaseException, fallback: str) -> tuple[str, int | None]:
    """The template file and line where rendering failed (Jinja rewrites tracebacks to them)."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2"):
            return frame.filename, frame.lineno
    return fallback, None
