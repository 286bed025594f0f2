"""A deterministic synthetic NBA warehouse shaped like the seeds' backfill.

Two seasons of about 66 game days each, 30 teams of 15 players (450 players), a schedule with no
games on Thanksgiving and Christmas Eve, player box scores in which about 43 % of rows are DNPs
(minutes ``0:00`` or NULL), and a team box-score feed that misses about one game in five, so that
``usage_rate`` ends up populated on about 47 % of all player-game rows, as in the seeds.

The same seed gives the same rows: everything is drawn from one ``random.Random(seed)``.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.demo.tables import RAW_TABLES, create_statements

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection


@dataclass(frozen=True)
class Season:
    year: int
    start: dt.date
    end: dt.date


SEASONS = (
    Season(2024, dt.date(2024, 10, 22), dt.date(2024, 12, 28)),
    Season(2025, dt.date(2025, 10, 21), dt.date(2025, 12, 28)),
)
OFF_DAYS = (dt.date(2024, 11, 28), dt.date(2024, 12, 24), dt.date(2025, 11, 27), dt.date(2025, 12, 24))
DEMO_START = SEASONS[0].start
DEMO_END = SEASONS[-1].end
DEFAULT_SEED = 7

# Names as one string each, split where used: compact, and the same order every time.
_TEAM_NAMES = (
    "ATL BOS BKN CHA CHI CLE DAL DEN DET GSW HOU IND LAC LAL MEM "
    "MIA MIL MIN NOP NYK OKC ORL PHI PHX POR SAC SAS TOR UTA WAS"
)
TEAMS = tuple(_TEAM_NAMES.split())
ROSTER_SIZE = 15
TRADED_PLAYERS = 40  # players who change teams between the two seasons
# Probability of a DNP by depth-chart slot: starters rest now and then, the end of the bench rarely plays.
DNP_BY_SLOT = (0.08,) * 5 + (0.2,) * 3 + (0.65,) * 3 + (0.95,) * 4
MINUTE_WEIGHT_BY_SLOT = (34, 33, 32, 31, 30, 24, 22, 20, 15, 12, 10, 6, 5, 4, 3)
GAMES_PER_DAY = (4, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 11, 12)
MISSING_TEAM_BOX_RATE = 0.2
MISSING_MINUTES_RATE = 0.003  # feed glitch: an active player's minutes arrive empty
OVERTIME_RATE = 0.06
DNP_REASONS = ("DNP - Coach's Decision", "DNP - Injury/Illness", "DND - Rest", "NWT - Not With Team")

_FIRST_NAMES = (
    "Aaron Andre Bam Ben Bobby Caleb Cam Chris Cole Dante Darius Dean Derrick Devin Eli Evan Franz "
    "Gary Grant Isaac Jalen Jamal Jaren Jordan Josh Kai Keegan Kevin Kyle Luka Malik Marcus Miles "
    "Nick Norman Obi Paul Quentin Reggie Scottie Tyrese Victor Walker Xavier Zach"
)
_LAST_NAMES = (
    "Adams Allen Barnes Bell Brooks Bridges Brown Carter Clark Collins Davis Edwards Ford Green "
    "Hall Harris Hayes Holmes Hunter Jackson James Johnson Jones King Lewis Mitchell Moore Murray "
    "Nelson Parker Porter Reed Robinson Ross Sanders Smith Thomas Turner Walker Wallace Watson "
    "White Williams Wright Young"
)


@dataclass(frozen=True)
class Player:
    lookup: str
    name: str
    quality: float  # orders a roster into its depth chart
    usage: float  # share of the team's plays while on the floor
    three_rate: float  # share of field-goal attempts from three


def game_days(season: Season) -> Iterator[dt.date]:
    """The dates of ``season`` that have games: every day but the off-days."""
    day = season.start
    while day <= season.end:
        if day not in OFF_DAYS:
            yield day
        day += dt.timedelta(days=1)


def _players(rng: random.Random, count: int) -> list[Player]:
    firsts, lasts = _FIRST_NAMES.split(), _LAST_NAMES.split()
    names = [f"{first} {last}" for first in firsts for last in lasts if first != last]
    players = []
    for name in rng.sample(names, count):
        quality = rng.random()
        players.append(
            Player(
                lookup="".join(ch for ch in name.lower() if ch.isalpha()),
                name=name,
                quality=quality,
                usage=0.13 + 0.14 * quality + rng.uniform(-0.03, 0.03),
                three_rate=rng.uniform(0.25, 0.6),
            )
        )
    return players


def _rosters(rng: random.Random, players: list[Player]) -> list[dict[str, list[Player]]]:
    """For each season, team -> roster in depth-chart order (best first)."""
    shuffled = players[:]
    rng.shuffle(shuffled)
    teams = {team: shuffled[i * ROSTER_SIZE : (i + 1) * ROSTER_SIZE] for i, team in enumerate(TEAMS)}
    seasons = []
    for index in range(len(SEASONS)):
        if index:
            teams = {team: roster[:] for team, roster in teams.items()}
            for _ in range(TRADED_PLAYERS // 2):
                first, second = rng.sample(TEAMS, 2)
                i, j = rng.randrange(ROSTER_SIZE), rng.randrange(ROSTER_SIZE)
                teams[first][i], teams[second][j] = teams[second][j], teams[first][i]
        seasons.append({team: sorted(roster, key=lambda p: -p.quality) for team, roster in teams.items()})
    return seasons


def _schedule(rng: random.Random, season: Season) -> list[tuple[str, dt.date, str, str]]:
    """(game_id, date, home, away): each team about every other day, never three days running."""
    games: list[tuple[str, dt.date, str, str]] = []
    played: dict[str, list[dt.date]] = {team: [] for team in TEAMS}
    for day in game_days(season):
        wanted = 2 if day == season.start else rng.choice(GAMES_PER_DAY)
        recent = {day - dt.timedelta(days=1), day - dt.timedelta(days=2)}
        rested = [team for team in TEAMS if len(recent.intersection(played[team][-2:])) < 2]
        rested.sort(key=lambda team: (len(played[team]), rng.random()))
        chosen = rested[: 2 * min(wanted, len(rested) // 2)]
        rng.shuffle(chosen)
        for home, away in zip(chosen[::2], chosen[1::2], strict=True):
            games.append((f"002{season.year % 100:02d}{len(games) + 1:05d}", day, home, away))
            played[home].append(day)
            played[away].append(day)
    return games


def _binomial(rng: random.Random, trials: int, p: float) -> int:
    return sum(rng.random() < p for _ in range(trials))


def _count(rng: random.Random, mean: float) -> int:
    return max(0, round(rng.gauss(mean, max(mean, 0.5) ** 0.5)))


def _box_line(rng: random.Random, player: Player, seconds: int) -> list[int]:
    """The 15 counting stats of one player who was on the floor for ``seconds``."""
    plays = player.usage * 100 * seconds / 2880  # ~100 possessions per 48 minutes
    fga = _count(rng, plays * 0.77)
    tpa = _binomial(rng, fga, player.three_rate)
    tpm = _binomial(rng, tpa, 0.36)
    fgm = tpm + _binomial(rng, fga - tpa, 0.52)
    fta = _count(rng, plays * 0.19)
    ftm = _binomial(rng, fta, 0.78)
    oreb, dreb = _count(rng, seconds / 1300), _count(rng, seconds / 440)
    stl, blk, tov = _count(rng, seconds / 2400), _count(rng, seconds / 3600), _count(rng, plays * 0.12)
    ast, pf = _count(rng, plays * 0.15 + seconds / 1500), _count(rng, seconds / 800)
    counts = [fgm, fga, tpm, tpa, ftm, fta, oreb, dreb, oreb + dreb, ast, stl, blk, tov, pf]
    return [2 * fgm + tpm + ftm, *counts]


def _split_seconds(rng: random.Random, total: int, slots: list[int]) -> list[int]:
    weights = [MINUTE_WEIGHT_BY_SLOT[slot] * rng.uniform(0.75, 1.25) for slot in slots]
    scale = total / sum(weights)
    seconds = [int(weight * scale) for weight in weights]
    seconds[0] += total - sum(seconds)
    return seconds


def _team_game(
    rng: random.Random,
    game: tuple[str, dt.date, str, str],
    year: int,
    team: str,
    roster: list[Player],
    total: int,
) -> tuple[list[list[Any]], list[int]]:
    """Box-score rows of one team in one game, and the team's summed counting stats."""
    game_id, day, _, _ = game
    active = [slot for slot in range(ROSTER_SIZE) if rng.random() >= DNP_BY_SLOT[slot]]
    for slot in range(ROSTER_SIZE):  # a coach dresses at least eight
        if len(active) >= 8:
            break
        if slot not in active:
            active.append(slot)
    active.sort()
    seconds = dict(zip(active, _split_seconds(rng, total, active), strict=True))
    rows, totals = [], [0] * 15
    for slot, player in enumerate(roster):
        head = [game_id, day, year, team, player.lookup, player.name]
        if slot not in seconds:
            minutes = "0:00" if rng.random() < 0.6 else None
            rows.append([*head, minutes, rng.choice(DNP_REASONS), *[0] * 15])
            continue
        line = _box_line(rng, player, seconds[slot])
        totals = [a + b for a, b in zip(totals, line, strict=True)]
        played = (
            None if rng.random() < MISSING_MINUTES_RATE else f"{seconds[slot] // 60}:{seconds[slot] % 60:02d}"
        )
        rows.append([*head, played, None, *line])
    return rows, totals


def build_rows(seed: int = DEFAULT_SEED) -> dict[str, list[list[Any]]]:
    """Every raw table's rows, in the column order of :data:`runbook.demo.tables.RAW_TABLES`."""
    rng = random.Random(seed)
    players = _players(rng, len(TEAMS) * ROSTER_SIZE)
    rosters = _rosters(rng, players)
    tables: dict[str, list[list[Any]]] = {name: [] for name in RAW_TABLES}
    for season, teams in zip(SEASONS, rosters, strict=True):
        for team, roster in teams.items():
            for slot, player in enumerate(roster):
                tables["nba_raw.player_rosters"].append([season.year, team, player.lookup, player.name, slot])
        games = _schedule(rng, season)
        covered: set[dt.date] = set()
        for game in games:
            game_id, day, home, away = game
            tables["nba_raw.schedule"].append([game_id, day, season.year, home, away, "Final"])
            total = (240 + (25 if rng.random() < OVERTIME_RATE else 0)) * 60
            sides = {}
            for team in (home, away):
                rows, totals = _team_game(rng, game, season.year, team, teams[team], total)
                tables["nba_raw.bdl_player_boxscores"] += rows
                sides[team] = totals
            # Keep at least one team box score per day so every day has team stats to build on.
            if rng.random() < MISSING_TEAM_BOX_RATE and day in covered:
                continue
            covered.add(day)
            for team, opponent in ((home, away), (away, home)):
                tables["nba_raw.nbac_team_boxscore"].append(
                    [game_id, day, season.year, team, opponent, team == home, total // 60, *sides[team]]
                )
    return tables


def generate_dataset(
    con_or_path: DuckDBPyConnection | str | os.PathLike[str], seed: int = DEFAULT_SEED
) -> None:
    """Create the demo's schemas and tables in a DuckDB database and fill the raw ones.

    ``con_or_path`` is an open ``duckdb`` connection or the path of a database file (created when
    missing). Existing demo tables are replaced; the pipeline's target tables are left empty.
    """
    import duckdb

    tables = build_rows(seed)
    if isinstance(con_or_path, str | os.PathLike):
        with duckdb.connect(str(con_or_path)) as con:
            _write(con, tables)
    else:
        _write(con_or_path, tables)


def _write(con: DuckDBPyConnection, tables: dict[str, list[list[Any]]]) -> None:
    for statement in create_statements():
        con.execute(statement)
    # Bulk load through CSV: DuckDB reads it far faster than row-by-row inserts.
    with tempfile.TemporaryDirectory(prefix="runbook-demo-") as folder:
        for name, rows in tables.items():
            path = Path(folder) / f"{name}.csv"
            with path.open("w", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerows(rows)
            quoted = path.as_posix().replace("'", "''")
            con.execute(f"COPY {name} FROM '{quoted}' (FORMAT csv, HEADER false)")
