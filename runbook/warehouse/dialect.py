"""BigQuery SQL, as processors write it, turned into SQL that DuckDB runs.

Processors and checks are written once, in BigQuery's dialect; the DuckDB adapter runs them
locally after :func:`translate` has transpiled them with sqlglot. Each distinct SQL text is
transpiled once (an LRU cache keyed by the text), so a check run for 500 dates costs one parse.

Table names. BigQuery names a table ``project.dataset.table``; DuckDB has catalogs, schemas and
tables. The DuckDB adapter keeps one database file, so the mapping drops the project::

    `proj.nba_analytics.player_game_summary`  ->  "nba_analytics"."player_game_summary"
    nba_analytics.player_game_summary         ->  nba_analytics.player_game_summary
    player_game_summary                       ->  player_game_summary   (schema main)
    CREATE SCHEMA `proj.nba_analytics`        ->  CREATE SCHEMA "nba_analytics"   (DROP SCHEMA too)

Two projects with a dataset of the same name therefore share one DuckDB schema. The schema of a
table that a statement creates is created on demand (:attr:`Statement.schemas`).

Fixes on top of sqlglot, each because DuckDB would otherwise answer differently from BigQuery:

* ``NUMERIC`` without precision becomes ``DECIMAL(38, 9)`` (BigQuery's NUMERIC), not DuckDB's
  default ``DECIMAL(18, 3)``, which would round values to three decimals.
* ``DATE_ADD`` / ``DATE_SUB`` become ``CAST(... AS DATE)``: DuckDB's ``date - INTERVAL`` is a
  TIMESTAMP, BigQuery's ``DATE_SUB`` is a DATE.

Parameters stay parameters: BigQuery's ``@start`` becomes DuckDB's named ``$start`` and the value
is bound by the driver, never pasted into the text.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import Token, TokenType

from runbook.errors import WarehouseError

SUMMARY_CHARS = 80
TRANSLATION_CACHE_SIZE = 1024
BIGQUERY_NUMERIC = exp.DataType.build("DECIMAL(38, 9)")
_DML = (exp.Insert, exp.Update, exp.Delete, exp.Merge)
_LEADING_COMMENTS = re.compile(r"^\s*(?:--[^\n]*\n|/\*.*?\*/)*", re.DOTALL)


@dataclass(frozen=True)
class Statement:
    """One statement of a BigQuery script, with its DuckDB translation.

    ``source`` is the BigQuery text (what the BigQuery adapter sends), ``duckdb_sql`` the
    translation, ``parameters`` the ``@names`` it reads, ``schemas`` the DuckDB schemas it creates
    objects in, ``is_dml`` whether it is INSERT / UPDATE / DELETE / MERGE, ``writes`` whether it
    is anything but a query, and ``tables`` the tables it names, as written.
    """

    source: str
    duckdb_sql: str
    parameters: frozenset[str]
    schemas: tuple[str, ...]
    is_dml: bool
    writes: bool
    tables: tuple[str, ...]


def describe_query(sql: str) -> str:
    """One line naming a query in an error message: whitespace folded, cut at 80 characters."""
    text = " ".join(_LEADING_COMMENTS.sub("", sql, count=1).split()) or " ".join(sql.split())
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def failure(sql: str, cause: str) -> str:
    """The message of a failed query: ``query "SELECT ..." failed: <cause>``, one line."""
    return f'query "{describe_query(sql)}" failed: {" ".join(cause.split())}'


def split_statements(sql: str) -> list[str]:
    """Split a BigQuery script at its top-level ``;`` into statement texts, kept verbatim.

    Uses sqlglot's tokenizer, so a ``;`` inside a string or comment does not split. Pieces with no
    tokens (blank, or comments only) are dropped.
    """
    pieces: list[str] = []
    start = 0
    has_tokens = False
    for token in _tokens(sql):
        if token.token_type == TokenType.SEMICOLON:
            if has_tokens:
                pieces.append(sql[start : token.start].strip())
            start, has_tokens = token.end + 1, False
        else:
            has_tokens = True
    if has_tokens:
        pieces.append(sql[start:].strip())
    return pieces


def parameter_names(sql: str) -> frozenset[str]:
    """The ``@name`` parameters a BigQuery statement reads (not ``@@system`` variables)."""
    tokens = _tokens(sql)
    names = set()
    for index, token in enumerate(tokens[:-1]):
        after = tokens[index + 1]
        if (
            token.token_type == TokenType.PARAMETER
            and after.start == token.end + 1
            and after.token_type != TokenType.PARAMETER
            and (index == 0 or tokens[index - 1].token_type != TokenType.PARAMETER)
        ):
            names.add(after.text)
    return frozenset(names)


def duckdb_table_name(table: str) -> str:
    """A BigQuery table name (``proj.ds.t``, ```proj.ds.t```, ``ds.t``) as DuckDB SQL."""
    with SQLGLOT_LOCK:
        try:
            parsed = exp.to_table(table.strip(), dialect="bigquery")
        except SqlglotError as exc:
            raise WarehouseError(f"not a table name: {table!r} ({exc})") from exc
        return _drop_project(parsed).sql(dialect="duckdb")


# sqlglot builds parts of a dialect on first use, and two threads that use it for the first time
# at once can see them half built (a valid CREATE TABLE then fails to parse, now and then): every
# call into sqlglot here holds this lock. Parses are cached, so it is rarely held for long.
SQLGLOT_LOCK = threading.RLock()


def translate(sql: str) -> tuple[Statement, ...]:
    """Parse a BigQuery script once and translate each statement to DuckDB (cached by text)."""
    with SQLGLOT_LOCK:
        return _translate(sql)


@functools.lru_cache(maxsize=TRANSLATION_CACHE_SIZE)
def _translate(sql: str) -> tuple[Statement, ...]:
    statements = []
    for source in split_statements(sql):
        try:
            tree = sqlglot.parse_one(source, read="bigquery")
        except SqlglotError as exc:
            cause = str(exc).splitlines()[0]
            raise WarehouseError(failure(source, f"not valid BigQuery SQL: {cause}")) from exc
        tables = tuple(
            ".".join(part.name for part in table.parts) for table in tree.find_all(exp.Table) if table.name
        )
        duck = _to_duckdb(tree.copy())
        statements.append(
            Statement(
                source=source,
                duckdb_sql=duck.sql(dialect="duckdb"),
                parameters=parameter_names(source),
                schemas=_created_schemas(duck),
                is_dml=isinstance(tree, _DML),
                writes=not isinstance(tree, exp.Query),
                tables=tables,
            )
        )
    return tuple(statements)


def _tokens(sql: str) -> list[Token]:
    try:
        with SQLGLOT_LOCK:
            return sqlglot.Dialect.get_or_raise("bigquery").tokenize(sql)
    except SqlglotError as exc:
        raise WarehouseError(failure(sql, f"cannot tokenize: {exc}")) from exc


def _to_duckdb(tree: exp.Expr) -> exp.Expr:
    if isinstance(tree, exp.Create | exp.Drop) and (tree.args.get("kind") or "").upper() == "SCHEMA":
        return _schema_without_project(tree)
    for table in tree.find_all(exp.Table):
        _drop_project(table)
    for datatype in list(tree.find_all(exp.DataType)):
        if datatype.this == exp.DataType.Type.DECIMAL and not datatype.expressions:
            datatype.replace(BIGQUERY_NUMERIC.copy())
    for shift in list(tree.find_all(exp.DateAdd, exp.DateSub)):
        if not isinstance(shift.parent, exp.Cast):
            cast = exp.Cast(to=exp.DataType.build("DATE"))
            shift.replace(cast)
            cast.set("this", shift)
    return tree


def _drop_project(table: exp.Table) -> exp.Table:
    if table.args.get("catalog") is not None:
        table.set("catalog", None)
    return table


def _schema_without_project(ddl: exp.Create | exp.Drop) -> exp.Create | exp.Drop:
    # BigQuery's CREATE/DROP SCHEMA `proj.ds` names a dataset in a project: keep only the dataset.
    target = ddl.this
    if isinstance(target, exp.Table):
        name = target.name or (target.args["db"].name if target.args.get("db") else "")
        dataset = name.split(".")[-1]
        ddl.set("this", exp.Table(db=exp.to_identifier(dataset, quoted=True)))
    return ddl


def _created_schemas(tree: exp.Expr) -> tuple[str, ...]:
    if not isinstance(tree, exp.Create) or (tree.args.get("kind") or "").upper() == "SCHEMA":
        return ()
    target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
    if isinstance(target, exp.Table) and target.db:
        return (target.db,)
    return ()
