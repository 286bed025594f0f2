"""The warehouse seam without a server: lazy imports, retries, error mapping, parameter types."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from google.api_core import exceptions as api_errors
from google.auth.credentials import AnonymousCredentials

from runbook.config import WarehouseConfig
from runbook.errors import ConfigError, TransientWarehouseError, WarehouseError
from runbook.warehouse import MAX_BACKOFF_SECONDS, call_with_retries, open_warehouse, plain_value
from runbook.warehouse.bigquery import BigQueryWarehouse
from runbook.warehouse.bigquery_errors import wrap_error as _wrap
from runbook.warehouse.bigquery_jobs import _parameter


def test_importing_the_package_loads_no_driver() -> None:
    code = "import sys, runbook.warehouse; print([m for m in ('duckdb', 'google') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


class Flaky:
    def __init__(self, failures: int, error: type[WarehouseError] = TransientWarehouseError) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"try {self.calls} failed")
        return "ok"


def test_retries_transient_errors_with_doubling_jittered_waits() -> None:
    waits: list[float] = []
    call = Flaky(failures=4)
    assert call_with_retries(call, max_retries=5, base_seconds=0.1, sleep=waits.append) == "ok"
    assert call.calls == 5
    for attempt, wait in enumerate(waits):
        assert 0.1 * 2**attempt * 0.5 <= wait <= 0.1 * 2**attempt


def test_waits_are_capped() -> None:
    waits: list[float] = []
    call_with_retries(Flaky(failures=3), max_retries=3, base_seconds=MAX_BACKOFF_SECONDS, sleep=waits.append)
    assert max(waits) <= MAX_BACKOFF_SECONDS


def test_gives_up_after_max_retries_saying_how_many_tries() -> None:
    call = Flaky(failures=10)
    with pytest.raises(TransientWarehouseError, match=r"^try 3 failed \(gave up after 3 tries\)$"):
        call_with_retries(call, max_retries=2, base_seconds=0, sleep=lambda _: None)
    assert call.calls == 3


def test_permanent_errors_and_zero_retries_are_not_retried() -> None:
    permanent = Flaky(failures=1, error=WarehouseError)
    with pytest.raises(WarehouseError, match="^try 1 failed$"):
        call_with_retries(permanent, max_retries=5, base_seconds=0, sleep=lambda _: None)
    assert permanent.calls == 1
    with pytest.raises(TransientWarehouseError, match="^try 1 failed$"):
        call_with_retries(Flaky(failures=1), max_retries=0, base_seconds=0, sleep=lambda _: None)


@pytest.mark.parametrize(
    "error",
    [
        api_errors.TooManyRequests("slow down"),
        api_errors.InternalServerError("oops"),
        api_errors.ServiceUnavailable("later"),
        api_errors.BadGateway("gateway"),
        api_errors.Forbidden("Exceeded rate limits", errors=[{"reason": "rateLimitExceeded"}]),
        api_errors.Forbidden("Quota exceeded", errors=[{"reason": "quotaExceeded"}]),
        api_errors.BadRequest("backend hiccup", errors=[{"reason": "backendError"}]),
    ],
)
def test_rate_limits_and_server_errors_are_transient(error: api_errors.GoogleAPICallError) -> None:
    wrapped = _wrap(error, "SELECT 1\nFROM t")
    assert isinstance(wrapped, TransientWarehouseError)
    assert str(wrapped).startswith('query "SELECT 1 FROM t" failed: ')


def test_client_errors_are_permanent_and_name_the_missing_table() -> None:
    bad = _wrap(api_errors.BadRequest("Syntax error: Unexpected keyword FROM at [1:8]"), "SELECT FROM")
    assert type(bad) is WarehouseError
    assert str(bad) == 'query "SELECT FROM" failed: Syntax error: Unexpected keyword FROM at [1:8]'
    missing = _wrap(
        api_errors.NotFound("Not found: Table proj:nba_analytics.x was not found in location US"), "q"
    )
    assert str(missing) == 'query "q" failed: table proj.nba_analytics.x does not exist'


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (dt.date(2024, 1, 1), "DATE"),
        (dt.datetime(2024, 1, 1, 12), "DATETIME"),
        (dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC), "TIMESTAMP"),
        (True, "BOOL"),
        (7, "INT64"),
        (7.5, "FLOAT64"),
        (Decimal("1.25"), "NUMERIC"),
        ("x", "STRING"),
        (None, "STRING"),
    ],
)
def test_scalar_parameter_types_follow_python_types(value: object, kind: str) -> None:
    parameter = _parameter("p", value, "SELECT @p")
    assert parameter.to_api_repr()["parameterType"] == {"type": kind}


def test_list_parameters_become_typed_arrays() -> None:
    repr_ = _parameter("ids", [1, 2, None], "SELECT @ids").to_api_repr()
    assert repr_["parameterType"] == {"type": "ARRAY", "arrayType": {"type": "INT64"}}
    dates = _parameter("days", [dt.date(2024, 1, 1)], "q").to_api_repr()
    assert dates["parameterType"]["arrayType"] == {"type": "DATE"}
    with pytest.raises(WarehouseError, match=r"parameter @mixed mixes types \['INT64', 'STRING'\]"):
        _parameter("mixed", [1, "a"], "q")
    with pytest.raises(WarehouseError, match="parameter @obj has unsupported type object"):
        _parameter("obj", object(), "q")


def test_plain_value_turns_decimals_into_floats_everywhere() -> None:
    value = {"a": Decimal("1.5"), "b": [Decimal("2"), {"c": Decimal("0.25")}], "d": dt.date(2024, 1, 1)}
    assert plain_value(value) == {"a": 1.5, "b": [2.0, {"c": 0.25}], "d": dt.date(2024, 1, 1)}
    assert type(plain_value(Decimal("2"))) is float


def test_a_local_endpoint_gets_anonymous_credentials(tmp_path: Path) -> None:
    config = WarehouseConfig(
        kind="bigquery", project="proj", location="EU", api_endpoint="http://127.0.0.1:9", max_retries=3
    )
    warehouse = open_warehouse(config, tmp_path, {})
    assert isinstance(warehouse, BigQueryWarehouse) and warehouse.kind == "bigquery"
    assert isinstance(warehouse.client._credentials, AnonymousCredentials)
    assert warehouse.client.project == "proj" and warehouse.client.location == "EU"
    warehouse.close()


def test_credentials_env_must_be_set_and_point_at_a_credentials_file(tmp_path: Path) -> None:
    config = WarehouseConfig(kind="bigquery", project="proj", credentials_env="BQ_CREDS")
    with pytest.raises(
        ConfigError, match=r"warehouse.credentials_env: environment variable BQ_CREDS is not set"
    ):
        open_warehouse(config, tmp_path, {})
    bogus = tmp_path / "creds.json"
    bogus.write_text(json.dumps({"type": "nonsense"}))
    with pytest.raises(ConfigError, match="cannot load credentials from"):
        open_warehouse(config, tmp_path, {"BQ_CREDS": str(bogus)})


def test_retries_until_the_deadline_not_a_count() -> None:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    call = Flaky(failures=1000)
    heard: list[TransientWarehouseError] = []
    with pytest.raises(TransientWarehouseError, match=r"gave up after \d+ tries"):
        call_with_retries(call, base_seconds=1.0, deadline_seconds=600.0, sleep=sleep, clock=lambda: clock[0],
                          on_retry=heard.append)  # fmt: skip
    assert clock[0] == pytest.approx(600.0)  # the last wait is cut to the deadline
    assert 10 < call.calls < 40 and len(heard) == call.calls - 1


def test_job_ids_are_deterministic_per_attempt_and_run() -> None:
    from runbook.warehouse import job_id_for

    first = job_id_for("bills", 3, 17, 1, "2026-11-30T07:00:00.123456+00:00")
    assert first == job_id_for("bills", 3, 17, 1, "2026-11-30T07:00:00.123456+00:00")
    assert first.startswith("bills_r3_t17_a1_") and len(first.rsplit("_", 1)[1]) == 8
    others = {
        job_id_for("bills", 3, 17, 2, "2026-11-30T07:00:00.123456+00:00"),  # the next attempt
        job_id_for("bills", 3, 17, 1, "2026-12-01T07:00:00+00:00"),  # run 3 of a state store made anew
        job_id_for("other", 3, 17, 1, "2026-11-30T07:00:00.123456+00:00"),
    }
    assert first not in others and len(others) == 3


def test_labels_follow_bigquerys_rules() -> None:
    from runbook.warehouse import job_labels

    labels = job_labels(
        runbook_processor="Player Game.Summary" + "x" * 80, runbook_date="2024-01-01", runbook_run=7
    )
    assert (
        labels["runbook_processor"].startswith("player_game_summary")
        and len(labels["runbook_processor"]) == 63
    )
    assert labels["runbook_date"] == "2024-01-01" and labels["runbook_run"] == "7"


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-01-15T20:00:00+00:00", "2026-01-16T08:00:00+00:00"),  # PST: midnight is 08:00 UTC
        ("2026-07-15T20:00:00+00:00", "2026-07-16T07:00:00+00:00"),  # PDT: 07:00 UTC
        ("2026-07-16T06:59:00+00:00", "2026-07-16T07:00:00+00:00"),  # a minute before midnight Pacific
        ("2026-03-08T05:00:00+00:00", "2026-03-08T08:00:00+00:00"),  # the night DST starts
    ],
)
def test_daily_quotas_reset_at_midnight_pacific(now: str, expected: str) -> None:
    from runbook.warehouse import quota_reset_after

    assert quota_reset_after(dt.datetime.fromisoformat(now), {}).isoformat() == expected


def test_the_quota_reset_can_be_set_for_tests() -> None:
    from runbook.warehouse import QUOTA_RESET_VARIABLE, quota_reset_after

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    got = quota_reset_after(now, {QUOTA_RESET_VARIABLE: "2026-01-01T00:05:00"})
    assert got == dt.datetime(2026, 1, 1, 0, 5, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("error", "kind", "throttle"),
    [
        (api_errors.Forbidden("x", errors=[{"reason": "rateLimitExceeded"}]), "transient", True),
        (api_errors.Forbidden("x", errors=[{"reason": "jobRateLimitExceeded"}]), "transient", True),
        (
            api_errors.Forbidden("too many concurrent queries", errors=[{"reason": "quotaExceeded"}]),
            "transient",
            True,
        ),
        (
            api_errors.Forbidden(
                "Quota exceeded: Your project exceeded quota for query usage per day.",
                errors=[{"reason": "quotaExceeded"}],
            ),
            "quota",
            False,
        ),  # fmt: skip
        (api_errors.TooManyRequests("slow down"), "transient", True),
        (api_errors.InternalServerError("oops"), "transient", False),
        (api_errors.ServiceUnavailable("oops", errors=[{"reason": "backendError"}]), "transient", False),
        (api_errors.BadRequest("bad", errors=[{"reason": "invalidQuery"}]), "permanent", False),
        (api_errors.BadRequest("big", errors=[{"reason": "resourcesExceeded"}]), "permanent", False),
        (api_errors.Forbidden("no", errors=[{"reason": "accessDenied"}]), "permanent", False),
    ],
)
def test_bigquery_errors_are_classified(error: Exception, kind: str, throttle: bool) -> None:
    from runbook.errors import QuotaExhausted

    wrapped = _wrap(error, "SELECT 1")
    found = (
        "quota" if isinstance(wrapped, QuotaExhausted) else "transient" if isinstance(wrapped, TransientWarehouseError)
        else "permanent"
    )  # fmt: skip
    assert found == kind
    assert getattr(wrapped, "throttle", False) is throttle
