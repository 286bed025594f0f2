"""Secrets never reach the state store, logs or handoffs: known values and credential shapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.config import parse_config
from runbook.redact import MASK, NO_SECRETS, Redactor, redact_tree
from runbook.workspace import Workspace


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "postgresql://runbook:s3cret@db.internal:5432/state",
            "postgresql://runbook:***@db.internal:5432/state",
        ),
        ("connect https://user:p%40ss@example.com/x ok", "connect https://user:***@example.com/x ok"),
        ("load --token=abc123def --date 2024-01-01", "load --token=*** --date 2024-01-01"),
        ("load --api-key=abc123def", "load --api-key=***"),
        ("load --token abc123def --date 2024-01-01", "load --token *** --date 2024-01-01"),
        ("export -p --db-password  hunter22 --verbose", "export -p --db-password  *** --verbose"),
        ("password: hunter22", "password: ***"),
        ('{"client_secret": "xyz987654"}', '{"client_secret": "***"}'),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "Authorization: Bearer ***"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic ***"),
    ],
)
def test_credential_shapes_are_masked(text: str, expected: str) -> None:
    assert NO_SECRETS(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://runbook@127.0.0.1:5432/state",
        "https://example.com/api?date=2024-01-01",
        "processed 120 rows for 2024-01-01 in 3.2s",
        "bearer of bad news",
        "backfill --workers 2 --date 2024-01-01 --no-resume",
        "",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert NO_SECRETS(text) == text


def test_known_environment_values_are_masked_longest_first() -> None:
    redact = Redactor(["abc", "sekrit-value", "sekrit-value-long", ""])
    assert redact("x sekrit-value-long y sekrit-value z") == f"x {MASK} y {MASK} z"
    assert redact("abc stays: too short to be a secret") == "abc stays: too short to be a secret"
    assert redact("in a url https://h/?k=sekrit-value") == f"in a url https://h/?k={MASK}"


def test_redact_tree_masks_exactly_what_the_redactor_masks() -> None:
    """Its shortcuts (dates, and strings without whitespace, ``:`` or ``=``, only looked at for
    known values) change nothing: every string comes out as the redactor alone makes it."""
    redact = Redactor(["sekrit-value", "tok3n"])
    texts = [
        "player_game", "2024-01-01", "2024-01-01T10:00:00Z", "v1.2.3", "sekrit-value", "x-tok3n-y",
        "2024-01-01T10:00:00Z-tok3n", "password=hunter22", "password:hunter22", "--token abc123def",
        "postgresql://runbook:s3cret@db/state", "Bearer eyJhbGciOiJIUzI1NiJ9.payload", "a\tpassword=x1",
        "ordinary text", "",
    ]  # fmt: skip
    tree = {"list": texts, "nested": [{"value": text, "n": 3, "none": None} for text in texts]}
    found = redact_tree(tree, redact)
    assert found["list"] == [redact(text) for text in texts]
    assert [item["value"] for item in found["nested"]] == [redact(text) for text in texts]
    assert found["list"][4] == MASK and found["list"][7] == f"password={MASK}"
    assert found["nested"][0] == {"value": "player_game", "n": 3, "none": None}


def test_values_the_config_takes_from_the_environment_are_secrets(tmp_path: Path) -> None:
    config = parse_config(
        {
            "state": {"database_url": "postgresql://rb:${PGPASS}@db/state"},
            "processors": {
                "load": {"command": "load", "env": {"API": "${API_TOKEN}", "MODE": "fast"}},
                "call": {"http": {"url": "https://h/x?key=${URL_KEY}", "headers": {"X-Key": "${HDR}"}}},
            },
        },
        "runbook.yaml",
    )
    environ = {"PGPASS": "pg-pass-1", "API_TOKEN": "tok-2222", "URL_KEY": "key-3333", "HDR": "hdr-4444",
               "UNUSED": "not-a-secret", "SHORT": "ab"}  # fmt: skip
    workspace = Workspace(config_path=tmp_path / "runbook.yaml", config=config, environ=environ)
    assert workspace.secret_values() == ["hdr-4444", "key-3333", "pg-pass-1", "tok-2222"]
    redact = Redactor(workspace.secret_values())
    assert (
        redact("calling with tok-2222 and hdr-4444, mode not-a-secret")
        == "calling with *** and ***, mode not-a-secret"
    )
