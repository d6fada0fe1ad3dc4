"""The five-field cron parser and the interval spec (pure; no sidecar)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from dapr_agents.ext.triggers import Cron, CronError
from dapr_agents.ext.triggers._schedule import _Spec


def at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)


def following(expression: str, start: str, count: int = 3) -> list[str]:
    cron = Cron.parse(expression)
    moment = at(start)
    out = []
    for _ in range(count):
        moment = cron.next_after(moment)
        out.append(moment.strftime("%Y-%m-%d %H:%M"))
    return out


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        ("*/15 * * * *", "2026-03-01 10:07", ["2026-03-01 10:15", "2026-03-01 10:30", "2026-03-01 10:45"]),
        ("0 9 * * mon-fri", "2026-11-20 10:00", ["2026-11-23 09:00", "2026-11-24 09:00", "2026-11-25 09:00"]),
        ("30 2 1 * *", "2026-01-15 00:00", ["2026-02-01 02:30", "2026-03-01 02:30", "2026-04-01 02:30"]),
        ("0 0 29 2 *", "2026-01-01 00:00", ["2028-02-29 00:00", "2032-02-29 00:00", "2036-02-29 00:00"]),
        ("5/20 1-2 * * *", "2026-05-05 00:00", ["2026-05-05 01:05", "2026-05-05 01:25", "2026-05-05 01:45"]),
        (
            "0 12 * jan,jul 7",
            "2026-01-01 00:00",
            ["2026-01-04 12:00", "2026-01-11 12:00", "2026-01-18 12:00"],
        ),
        # Day-of-month and day-of-week both restricted: either matches (Vixie cron).
        ("0 0 13 * fri", "2026-02-01 00:00", ["2026-02-06 00:00", "2026-02-13 00:00", "2026-02-20 00:00"]),
        ("@hourly", "2026-12-31 22:59", ["2026-12-31 23:00", "2027-01-01 00:00", "2027-01-01 01:00"]),
        ("@weekly", "2026-11-22 00:00", ["2026-11-29 00:00", "2026-12-06 00:00", "2026-12-13 00:00"]),
    ],
)
def test_next_fire_times(expression: str, start: str, expected: list[str]) -> None:
    assert following(expression, start) == expected


def test_next_is_strictly_after_and_takes_naive_as_utc() -> None:
    cron = Cron.parse("* * * * *")
    assert cron.next_after(datetime(2026, 1, 1, 10, 0, 0)) == at("2026-01-01 10:01")
    assert cron.next_after(datetime(2026, 1, 1, 10, 0, 59, 999)) == at("2026-01-01 10:01")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "has 4 field"),
        ("60 * * * *", "minute 60 is out of range 0-59"),
        ("* 24 * * *", "hour 24 is out of range 0-23"),
        ("* * 0 * *", "day of month 0 is out of range 1-31"),
        ("* * * 13 *", "month 13 is out of range 1-12"),
        ("* * * * 8", "day of week 8 is out of range 0-7"),
        ("*/0 * * * *", "step '0'"),
        ("5-1 * * * *", "runs backwards"),
        ("x * * * *", "'x' is not a valid minute"),
        ("* * * foo *", "'foo' is not a valid month"),
        ("1,,2 * * * *", "empty list item"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_bad_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        Cron.parse(expression)


def test_intervals_are_aligned_to_the_epoch() -> None:
    spec = _Spec(None, 300)
    assert spec.next_after(datetime(2026, 1, 1, 10, 2, 17)) == datetime(2026, 1, 1, 10, 5)
    assert spec.next_after(datetime(2026, 1, 1, 10, 5)) == datetime(2026, 1, 1, 10, 10)
    assert _Spec("0 * * * *", None).next_after(datetime(2026, 1, 1, 10, 2)) == datetime(2026, 1, 1, 11, 0)
