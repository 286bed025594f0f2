"""runbook.yaml parsing: typed, frozen objects, and one precise error per mistake."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from runbook.config import RetryPolicy, load_config, parse_config, parse_duration
from runbook.errors import EXIT_USAGE, ConfigError
from runbook.steps.templating import check_templates


def config(**processors: Any) -> dict[str, Any]:
    return {"processors": processors or {"a": {"command": "echo"}}}


def error_of(data: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "runbook.yaml")
    assert caught.value.exit_code == EXIT_USAGE
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_and_shorthands() -> None:
    parsed = parse_config(
        {
            "calendar": {
                "off_weekdays": ["Sunday", "mon"],
                "off_days": ["2024-12-25"],
                "seasons": ["2024-10-22"],
            },
            "pools": {"bq": 2},
            "processors": {
                "a": {"command": "echo {{ date }}", "retries": 3, "timeout": "5m", "pool": "bq"},
                "b": {"python": "pkg.mod:build", "needs": ["a"], "bootstrap_days": 7},
            },
        },
        "runbook.yaml",
    )
    a, b = parsed.processors["a"], parsed.processors["b"]
    assert a.retries == RetryPolicy(attempts=3) and a.timeout == 300.0 and a.step_kind == "command"
    assert b.step_kind == "python" and b.batch_days == 1 and not b.depends_on_past
    assert parsed.calendar.off_weekday_numbers == frozenset({6, 0})
    assert parsed.calendar.off_days == [dt.date(2024, 12, 25)]
    assert parsed.bootstrap_days("a") == 0 and parsed.bootstrap_days("b") == 7
    assert parsed.order() == ["a", "b"] and parsed.downstream_of("a") == {"b"}
    with pytest.raises(AttributeError):  # frozen
        a.timeout = 1  # type: ignore[misc]  # frozen


def test_order_puts_upstreams_first_and_keeps_declaration_order() -> None:
    parsed = parse_config(
        config(
            c={"command": "x", "needs": ["b", "a"]},
            a={"command": "x"},
            b={"command": "x", "needs": ["a"]},
            d={"command": "x"},
        ),
        "f",
    )
    assert parsed.order() == ["a", "b", "c", "d"]
    assert parsed.downstream_of("a") == {"b", "c"} and parsed.downstream_of("d") == set()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        ("90", 90.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("250ms", 0.25),
        (None, None),
    ],
)
def test_durations(value: Any, seconds: float | None) -> None:
    assert parse_duration(value) == seconds


def test_retry_backoff_is_capped() -> None:
    policy = RetryPolicy(attempts=5, delay=1, backoff=3, max_delay=5)
    assert [policy.wait_before(n) for n in (1, 2, 3)] == [1, 3, 5]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            config(a={"comand": "echo"}),
            "runbook.yaml: processors.a.comand: unknown key (did you mean 'command'?)",
        ),
        (
            {"processors": {"a": {"command": "x"}}, "wokers": 2},
            "runbook.yaml: wokers: unknown key (did you mean 'workers'?)",
        ),
        ({"workers": "many", **config()}, "runbook.yaml: workers: expected an integer (got 'many')"),
        (config(a={"command": "x", "retries": {"attempts": "three"}}), "processors.a.retries.attempts:"),
        (config(a={"command": "x", "timeout": "soon"}), "processors.a.timeout: not a duration: 'soon'"),
        (config(a={"command": "x", "batch_days": 0}), "processors.a.batch_days: must be at least 1 (got 0)"),
        (
            config(a={}),
            "processors.a: exactly one of command, python, sql, sql_file, http is required (found none)",
        ),
        (config(a={"command": "x", "sql": "select 1"}), "(found command, sql)"),
        (config(a={"python": "module_only"}), "python must be 'module:function'"),
        (
            config(a={"python": "os:getcwd", "timeout": "5s"}),
            "processors.a.timeout: a python step cannot be timed out (it runs inside the controller)",
        ),
        (
            config(a={"command": "x", "needs": ["zz"]}),
            "processors.a.needs.0: unknown upstream processor 'zz'",
        ),
        (config(a={"command": "x", "pool": "p"}), "processors.a.pool: unknown pool 'p'"),
        ({"pools": {"p": 0}, **config()}, "pools.p: pool 'p' needs at least 1 slot (got 0)"),
        (config(**{"bad name": {"command": "x"}}), "invalid processor name 'bad name'"),
        (
            {"calendar": {"off_weekdays": ["caturday"]}, **config()},
            "calendar.off_weekdays: unknown weekday 'caturday'",
        ),
        (
            {"calendar": {"start": "2024-02-01", "end": "2024-01-01"}, **config()},
            "calendar.end: end 2024-01-01 is before start 2024-02-01",
        ),
        ({"calendar": {"off_days": ["2024-02-30"]}, **config()}, "calendar.off_days.0:"),
        ({"warehouse": {"kind": "bigquery"}, **config()}, "warehouse: kind bigquery needs project"),
        ({"processors": {}}, "processors: needs at least 1 entry"),
        ({"workers": 2}, "processors: required key is missing"),
        (["a", "list"], "runbook.yaml: the file must hold a mapping"),
    ],
)
def test_errors_name_the_key_path_and_problem(data: Any, expected: str) -> None:
    message = error_of(data)
    assert expected in message, message
    assert message.startswith("runbook.yaml: ")


def test_cycles_are_reported_with_their_path() -> None:
    message = error_of(
        config(
            a={"command": "x", "needs": ["c"]},
            b={"command": "x", "needs": ["a"]},
            c={"command": "x", "needs": ["b"]},
        )
    )
    assert "cycle in needs: a -> c -> b -> a" in message
    assert "processors.a.needs: cycle in needs: a -> a" in error_of(
        config(a={"command": "x", "needs": ["a"]})
    )


def test_load_config_reports_yaml_and_file_problems(tmp_path: Path) -> None:
    path = tmp_path / "runbook.yaml"
    with pytest.raises(ConfigError, match="file not found"):
        load_config(path)
    path.write_text("processors:\n  a: {command: x\n  b: [\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: line ") and "invalid YAML" in str(caught.value)
    path.write_text("processors:\n  a:\n    command: x\n    needs: nope\n")
    with pytest.raises(ConfigError, match=r"processors\.a\.needs: expected a list \(got 'nope'\)"):
        load_config(path)
    path.write_text("processors:\n  a:\n    command: [sh, -c, 'echo {{ date }}']\n")
    assert load_config(path).processors["a"].command == ["sh", "-c", "echo {{ date }}"]


def test_definition_hash_follows_the_step_not_the_scheduling() -> None:
    one = parse_config(config(a={"command": "echo 1", "workers": 1}), "f").processors["a"]
    same = parse_config(config(a={"command": "echo 1", "workers": 4, "retries": 2}), "f").processors["a"]
    other = parse_config(config(a={"command": "echo 2"}), "f").processors["a"]
    assert one.definition_hash() == same.definition_hash() != other.definition_hash()


@pytest.mark.parametrize(
    ("processor", "expected"),
    [
        ({"command": "echo {{ date "}, "processors.a.command: template error"),
        ({"command": ["echo", "{% if %}"]}, "processors.a.command.1: template error"),
        (
            {"command": "echo {{ undefined_name }}"},
            "processors.a.command: template uses unknown variable 'undefined_name'",
        ),
        (
            {"http": {"url": "http://x/{{ dat }}"}},
            "processors.a.http.url: template uses unknown variable 'dat'",
        ),
    ],
)
def test_step_templates_are_checked_before_anything_runs(processor: dict[str, Any], expected: str) -> None:
    parsed = parse_config(config(a=processor), "runbook.yaml")  # loading stays cheap: no Jinja
    with pytest.raises(ConfigError) as caught:
        check_templates(parsed, "runbook.yaml")
    assert expected in str(caught.value), str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("processors:\n  a: {command: x}\n  a: {command: y}\n", "line 3: key 'a' is given twice"),
        (
            "calendar: {off_days: [2024-02-30]}\nprocessors: {a: {command: x}}\n",
            "calendar.off_days.0: not a valid date",
        ),
        ("processors: {a: {command: x, timeout: 0s}}\n", "processors.a.timeout: must be more than 0 seconds"),
    ],
)
def test_mistakes_that_once_slipped_through_are_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "runbook.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert expected in str(caught.value) and "\n" not in str(caught.value), str(caught.value)


def test_a_huge_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "runbook.yaml"
    path.write_text("processors: {a: {command: x}}\n" + "# padding\n" * 300_000)
    with pytest.raises(ConfigError, match="may be at most"):
        load_config(path)


def test_definition_hash_is_stable_across_releases() -> None:
    """Stored code versions are these hashes: a change would make every built date stale."""
    parsed = parse_config(
        config(
            a={"command": "echo {{ date }}"},
            b={"sql": "select 1"},
            c={"http": {"url": "http://x/{{date}}", "headers": {"A": "b"}, "json": {"d": "{{ date }}"},
                        "poll": {"url": "http://p", "interval": "3s"}}},
        ),
        "f",
    )  # fmt: skip
    hashes = {name: proc.definition_hash() for name, proc in parsed.processors.items()}
    assert hashes == {"a": "8e263a5abf", "b": "dd6673e1bc", "c": "3a548e5b50"}


def test_notify_targets_read_on_from_yaml_and_take_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "runbook.yaml"
    path.write_text(
        "notify:\n"
        "  - url: ${SLACK_HOOK}\n"
        "    on: [failed, stalled]\n"  # YAML 1.1 reads a bare `on` key as true
        "    format: slack\n"
        "    stalled_after: 45m\n"
        "    retries: 5\n"
        "  - url: https://ops.example.com/hooks/${OPS_TOKEN}\n"
        "processors:\n  a:\n    command: echo\n",
        encoding="utf-8",
    )
    slack, ops = load_config(path).notify
    assert (slack.on, slack.format, slack.stalled_after, slack.retries.attempts) == (
        ["failed", "stalled"], "slack", 2700.0, 5,
    )  # fmt: skip
    assert ops.on == ["finished", "failed", "blocked", "interrupted", "stalled", "throttled"]
    assert (ops.format, ops.stalled_after, ops.timeout) == ("json", 1800.0, 10.0)
    assert ops.retries == RetryPolicy(attempts=3, delay=2.0)


@pytest.mark.parametrize(
    ("notify", "expected"),
    [
        ([{"url": "https://hooks.slack.com/services/T0/B0/abc"}],
         "notify.0.url: a webhook URL is a secret: take it from the environment, e.g. url: ${SLACK_WEBHOOK_URL}"),
        ([{"url": "${H}", "on": ["failed", "done"]}],
         "notify.0.on: unknown event 'done' (use finished, failed, blocked, interrupted, stalled, throttled)"),
        ([{"url": "${H}", "format": "xml"}], "notify.0.format: expected one of json, slack (got 'xml')"),
        ([{"url": "${H}", "stalled_after": "0s"}], "notify.0.stalled_after: must be more than 0 seconds (got '0s')"),
        ([{"url": "${H}", "retry": 3}], "notify.0.retry: unknown key (did you mean 'retries'?)"),
        ({"url": "${H}"}, "notify: expected a list (got a mapping)"),
    ],
)  # fmt: skip
def test_notify_mistakes_are_one_line(notify: Any, expected: str) -> None:
    assert error_of({**config(), "notify": notify}).endswith(expected)


def test_retries_attempts_counts_retries_after_the_first_try_as_documented() -> None:
    from pathlib import Path

    for value in (3, {"attempts": 3}):
        proc = parse_config(config(a={"command": "x", "retries": value}), "f").processors["a"]
        assert (proc.retries.attempts, proc.retries.tries) == (3, 4)
    assert parse_config(config(a={"command": "x"}), "f").processors["a"].retries.tries == 1
    docs = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text(encoding="utf-8")
    assert "`attempts` counts retries, not tries" in docs and "runs a step at most 4 times" in docs
