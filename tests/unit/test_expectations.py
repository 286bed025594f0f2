"""The ``expect:`` language: what it accepts, what it refuses, and what an evaluation records."""

from __future__ import annotations

from typing import Any

import pytest

from runbook.expectations import Expectation, ExpressionError, explain, show


def outcome(text: str, **values: Any) -> dict[str, Any]:
    return Expectation.parse(text).evaluate(values).as_dict()


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("pct_populated >= 45", {"pct_populated"}),
        ("duplicates == 0", {"duplicates"}),
        ("dates >= 0.94 * expected_dates", {"dates", "expected_dates"}),
        ("(a + b) / 2 < c - 1", {"a", "b", "c"}),
        ("0 <= pct <= 100", {"pct"}),
        ("a > 1 and not (b == 0 or c != 2)", {"a", "b", "c"}),
        ("delta > -5", {"delta"}),
        ("  x >= 1  ", {"x"}),
    ],
)
def test_accepted_conditions_and_the_names_they_use(text: str, names: set[str]) -> None:
    assert Expectation.parse(text).names == names


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("__import__('os').system('id') == 0", "is not allowed"),
        ("open('/etc/passwd') != 0", "is not allowed"),
        ("x.__class__ == 1", "'x.__class__' is not allowed"),
        ("x[0] == 1", "is not allowed"),
        ("x ** 2 > 1", "'x ** 2' is not allowed"),
        ("x % 2 == 0", "is not allowed"),
        ("(lambda: 1)() == 1", "is not allowed"),
        ("[x][0] == 1", "is not allowed"),
        ("x == 'abc'", "only numbers"),
        ("x == True", "only numbers"),
        ("x in y", "'in' is not allowed"),
        ("x is None", "'is' is not allowed"),
        ("(a > 1) > 0", "is not allowed"),
        ("x if y else z", "is not allowed"),
        ("x", "is not a condition"),
        ("x + 1", "is not a condition"),
        ("not x", "is not a condition"),
        ("x >=", "cannot parse"),
        ("x = 1", "cannot parse"),
        ("", "empty condition"),
    ],
)
def test_anything_outside_the_grammar_is_refused(text: str, problem: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        Expectation.parse(text)
    assert problem in str(caught.value)


def test_a_comparison_records_both_sides_and_the_result() -> None:
    assert outcome("pct_populated >= 45", pct_populated=42.9) == {
        "expr": "pct_populated >= 45",
        "left": 42.9,
        "op": ">=",
        "right": 45,
        "passed": False,
    }
    assert outcome("pct_populated >= 45", pct_populated=47.9)["passed"] is True
    assert outcome("dates >= 0.94 * expected_dates", dates=62, expected_dates=66) == {
        "expr": "dates >= 0.94 * expected_dates",
        "left": 62,
        "op": ">=",
        "right": pytest.approx(62.04),
        "passed": False,
    }


@pytest.mark.parametrize(
    ("text", "values", "passed"),
    [
        ("a == 1", {"a": 1}, True),
        ("a != 1", {"a": 1}, False),
        ("a < 1", {"a": 0.5}, True),
        ("a <= 1", {"a": 1}, True),
        ("a > 1", {"a": 1}, False),
        ("a / b == 0.5", {"a": 1, "b": 2}, True),
        ("a - b * 2 == -3", {"a": 1, "b": 2}, True),
        ("-a < 0", {"a": 3}, True),
        ("0 <= a <= 100", {"a": 101}, False),
        ("a > 1 and b > 1", {"a": 2, "b": 0}, False),
        ("a > 1 or b > 1", {"a": 2, "b": 0}, True),
        ("not a > 1", {"a": 0}, True),
        ("ok == 1", {"ok": True}, True),
    ],
)
def test_evaluation(text: str, values: dict[str, Any], passed: bool) -> None:
    assert outcome(text, **values)["passed"] is passed


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("pct >= 45", {"pct": None}),  # SAFE_DIVIDE over no rows gives NULL
        ("pct != 45", {"pct": None}),
        ("a / b > 0", {"a": 1, "b": 0}),
        ("a * 2 > 0", {"a": "many"}),
        ("a > 0", {"a": "many"}),
        ("a + b > 0", {"a": None, "b": 1}),
    ],
)
def test_nulls_and_impossible_arithmetic_fail_instead_of_raising(text: str, values: dict[str, Any]) -> None:
    assert outcome(text, **values)["passed"] is False


def test_compound_conditions_record_each_comparison() -> None:
    result = outcome("0 <= pct <= 100 and duplicates == 0", pct=47.9, duplicates=2)
    assert (result["passed"], result["left"], result["op"]) == (False, None, None)
    chain, duplicates = result["parts"]
    assert chain["expr"] == "0 <= pct <= 100" and chain["passed"] is True
    assert [(p["expr"], p["left"], p["right"]) for p in chain["parts"]] == [
        ("0 <= pct", 0, 47.9),
        ("pct <= 100", 47.9, 100),
    ]
    assert duplicates == {"expr": "duplicates == 0", "left": 2, "op": "==", "right": 0, "passed": False}
    negated = outcome("not duplicates > 0", duplicates=0)
    assert negated["passed"] is True and negated["parts"][0]["passed"] is False


def test_explain_and_show_print_values_briefly() -> None:
    condition = Expectation.parse("dates >= 0.94 * expected_dates").evaluate(
        {"dates": 62, "expected_dates": 66}
    )
    assert condition.explain() == "dates >= 0.94 * expected_dates (62 >= 62.04)"
    assert (
        explain(outcome("a > 1 and b < 2", a=2, b=None))
        == "a > 1 and b < 2 (a > 1 (2 > 1); b < 2 (NULL < 2))"
    )
    assert [show(v) for v in (None, 47.9, 1 / 3, 7, float("nan"))] == ["NULL", "47.9", "0.333333", "7", "nan"]
    assert outcome("x > 0", x=float("nan"))["left"] is None  # never NaN in the stored JSON


# -- baselines from history ------------------------------------------------------------------------


def test_baseline_calls_are_parsed_with_their_metric_and_window() -> None:
    from runbook.expectations import Baseline

    parsed = Expectation.parse(
        "rows >= 0.5 * median(rows, 14) and pct > quantile(pct, 0.1, 28) - last_week(pct)"
    )
    assert parsed.names == {"rows", "pct"}
    assert parsed.baselines == {
        Baseline("median", "rows", 14),
        Baseline("quantile", "pct", 28, 0.1),
        Baseline("last_week", "pct"),
    }


def test_median_and_quantile_use_the_n_newest_values() -> None:
    from runbook.expectations import NO_HISTORY, Baseline

    newest_first = [10, 20, 30, 40, 1000]
    assert Baseline("median", "rows", 4).compute(newest_first) == 25.0
    assert Baseline("quantile", "rows", 5, 0.25).compute(newest_first) == 20.0
    assert Baseline("quantile", "rows", 4, 1.0).compute(newest_first) == 40.0
    assert Baseline("last_week", "rows").compute([7]) == 7
    assert Baseline("median", "rows", 3).compute([]) is NO_HISTORY


def test_a_baseline_without_history_is_not_judged_and_says_so() -> None:
    from runbook.expectations import Baseline

    parsed = Expectation.parse("rows >= 0.5 * median(rows, 14)")
    unjudged = parsed.evaluate({"rows": 1})
    assert unjudged.passed and unjudged.as_dict()["no_history"] is True
    assert unjudged.explain() == "rows >= 0.5 * median(rows, 14) (no history yet: not judged)"
    judged = parsed.evaluate({"rows": 1}, {Baseline("median", "rows", 14): 10.0})
    assert not judged.passed and judged.explain() == "rows >= 0.5 * median(rows, 14) (1 >= 5)"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("rows >= mean(rows, 3)", "unknown function 'mean'"),
        ("rows >= os.system(1)", "is not allowed"),
        ("rows >= median(rows)", "median takes 2 argument(s)"),
        ("rows >= median(rows, 3, 4)", "median takes 2 argument(s)"),
        ("rows >= median(rows, n=3)", "median takes 2 argument(s)"),
        ("rows >= median(1, 3)", "must be a metric name"),
        ("rows >= median(rows, 0)", "N in median(metric, N) must be a whole number"),
        ("rows >= median(rows, 2.5)", "must be a whole number"),
        ("rows >= median(rows, 400)", "from 1 to 366"),
        ("rows >= quantile(rows, 1.5, 7)", "q in quantile(metric, q, N) must be a number from 0 to 1"),
        ("rows >= quantile(rows, x, 7)", "must be a number from 0 to 1"),
        ("rows >= last_week(rows, 7)", "last_week takes 1 argument(s)"),
        ("median(rows, 3)", "is not a condition"),
    ],
)
def test_wrong_baseline_calls_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        Expectation.parse(text)
    assert problem in str(caught.value)
