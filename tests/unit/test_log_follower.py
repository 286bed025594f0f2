"""How an adopted process's progress is read from its log: a real file, appended to, rotated."""

from __future__ import annotations

import re
from pathlib import Path

from runbook.engine.adopt import DEFAULT_DATE_FORMAT, DEFAULT_PATTERN, LogFollower

RANGE = ("2024-11-01", "2024-11-30")


def follower(
    path: Path, pattern: str = DEFAULT_PATTERN, date_format: str = DEFAULT_DATE_FORMAT
) -> LogFollower:
    return LogFollower(path, re.compile(pattern), date_format, *RANGE)


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


def test_the_highest_date_of_the_range_wins_and_timestamps_outside_it_do_not_count(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_text("2026-01-31T23:15:00 starting backfill\n", encoding="utf-8")
    found = follower(log)
    assert found.read() is None
    append(
        log,
        "2026-01-31T23:15:01 Processing game date 2024-11-03\n2026-01-31T23:16:00 Processing game date 2024-11-02\n",
    )
    assert found.read() == "2024-11-03"  # a retry of an earlier date does not move it back
    append(log, "2026-01-31T23:17:00 Processing game date 2024-12-01 (out of range)\n")
    assert found.read() == "2024-11-03"


def test_a_line_still_being_written_is_read_once_it_ends(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_text("Processing game date 2024-11-0", encoding="utf-8")
    found = follower(log)
    assert found.read() is None
    append(log, "4\n")
    assert found.read() == "2024-11-04"


def test_a_rotated_log_is_read_from_its_start_and_a_missing_one_keeps_what_was_seen(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_text("Processing game date 2024-11-05\n" * 50, encoding="utf-8")
    found = follower(log)
    assert found.read() == "2024-11-05"
    log.write_text("Processing game date 2024-11-07\n", encoding="utf-8")  # shorter: truncated and rewritten
    assert found.read() == "2024-11-07"
    log.unlink()
    assert found.read() == "2024-11-07"


def test_the_pattern_picks_its_date_group_in_the_given_format(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_text("run 2024-11-20 Processing game date 20241106 id=20241130\n", encoding="utf-8")
    named = follower(log, r"game date (?P<date>\d{8})", "%Y%m%d")
    assert named.read() == "2024-11-06"
    first_group = follower(log, r"Processing game date (\d{8})", "%Y%m%d")
    assert first_group.read() == "2024-11-06"
    whole = follower(log, r"\d{8}", "%Y%m%d")
    assert whole.read() == "2024-11-30"
    assert follower(log, r"game date (\d{8})").read() is None  # not an ISO date: nothing read


def test_a_large_log_is_read_in_pieces(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    lines = [f"Processing game date 2024-11-{day:02d} {'x' * 200}\n" for day in range(1, 31)]
    log.write_text("".join(lines * 200), encoding="utf-8")  # about 1.3 MB: more than one read
    found = follower(log)
    assert found.read() == "2024-11-30"
    assert found.offset == log.stat().st_size
