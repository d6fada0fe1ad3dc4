"""The dev sidecar's port of the scheduler's time rules (dapr/kit's cron parser, Go durations, ISO 8601
durations, go-etcd-cron's due times). The expected cron times, parser errors, duration errors and
``AddDate`` result are what Go gives: they were printed by a Go program calling dapr/kit v0.18.2's
parser (daprd 1.18.2's) and Go's ``time`` package. The wire behaviour is in ``test_jobs.py``, on
both runtimes."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from dapr_agents.ext.devsidecar._jobs_schedule import (
    ScheduleError,
    check_job_name,
    parse_cron,
    parse_go_duration,
    parse_point_in_time,
)

UTC = timezone.utc


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


def next_after(spec: str, *moment: int) -> datetime:
    upcoming = parse_cron("TZ=UTC " + spec).next(at(*moment))
    assert upcoming is not None
    return datetime.fromtimestamp(upcoming, UTC)


@pytest.mark.parametrize(
    ("spec", "after", "expected"),
    [
        ("0 30 * * * *", (2026, 1, 1, 10, 29, 59), (2026, 1, 1, 10, 30)),
        ("0 30 * * * *", (2026, 1, 1, 10, 30), (2026, 1, 1, 11, 30)),  # strictly after
        ("*/15 * * * * *", (2026, 12, 4, 13, 0, 7), (2026, 12, 4, 13, 0, 15)),
        ("0 0 12 * * mon-fri", (2026, 12, 4, 13), (2026, 12, 7, 12)),  # Friday afternoon -> Monday
        ("0 0 0 29 feb ?", (2026, 3, 1), (2028, 2, 29)),
        ("0 0 0 1,15 * *", (2026, 1, 2), (2026, 1, 15)),
        ("0 0 0 13 * 5", (2026, 2, 1), (2026, 2, 6)),  # day of month OR day of week, neither a star
        ("@daily", (2026, 1, 31, 10), (2026, 2, 1)),
        ("@midnight", (2026, 1, 31, 10), (2026, 2, 1)),
        ("@monthly", (2026, 12, 31, 10), (2027, 1, 1)),
        ("@yearly", (2026, 6, 1), (2027, 1, 1)),
        ("@weekly", (2026, 12, 4, 10), (2026, 12, 6)),  # Sunday
        ("@hourly", (2026, 12, 4, 10, 0, 1), (2026, 12, 4, 11)),
    ],
)
def test_cron_specs_fire_when_dapr_kit_says(spec, after, expected):
    assert next_after(spec, *after) == datetime(*expected, tzinfo=UTC)


def test_every_adds_its_duration_without_rounding():
    assert parse_cron("@every 1h30m").next(100.25) == 100.25 + 5400
    assert parse_cron("@every 1.5s").next(0.0) == 1.5


def test_a_zone_prefix_matches_its_wall_clock():
    upcoming = parse_cron("TZ=America/New_York 0 0 9 * * *").next(at(2026, 7, 1, 12))
    assert upcoming == at(2026, 7, 1, 13)  # 09:00 EDT


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty spec string"),
        ("* * * * *", "expected exactly 6 fields, found 5: [* * * * *]"),
        ("0 0 0 0 * *", "beginning of range (0) below minimum (1): 0"),
        ("0 0 0 * 13 *", "end of range (13) above maximum (12): 13"),
        ("0 0 5-2 * * *", "beginning of range (5) beyond end of range (2): 5-2"),
        ("0 0 */0 * * *", "step of range should be a positive number: */0"),
        ("0 0 1/2/3 * * *", "too many slashes: 1/2/3"),
        ("0 0 -1 * * *", 'failed to parse int from : strconv.Atoi: parsing "": invalid syntax'),
        ("TZ=Nowhere/Land 0 * * * * *", "provided bad location Nowhere/Land: unknown time zone Nowhere/Land"),
        ("@every 1d", 'failed to parse duration @every 1d: time: unknown unit "d" in duration "1d"'),
    ],
)
def test_cron_errors_are_worded_as_go_words_them(spec, message):
    with pytest.raises(ScheduleError) as raised:
        parse_cron(spec)
    assert str(raised.value) == message


def test_go_durations():
    assert parse_go_duration("1h2m3.5s") == 3723.5
    assert parse_go_duration("-1m") == -60
    assert parse_go_duration("0") == 0
    assert parse_go_duration("1ms") == pytest.approx(0.001)
    for text, message in [
        ("", 'time: invalid duration ""'),
        ("1", 'time: missing unit in duration "1"'),
        ("h", 'time: invalid duration "h"'),
        ("1x", 'time: unknown unit "x" in duration "1x"'),
        ("+", 'time: invalid duration "+"'),
    ]:
        with pytest.raises(ScheduleError) as raised:
            parse_go_duration(text)
        assert str(raised.value) == message


def test_points_in_time():
    now = at(2026, 1, 31)
    assert parse_point_in_time("2030-01-02T03:04:05Z", now) == at(2030, 1, 2, 3, 4, 5)
    assert parse_point_in_time("2030-01-02T03:04:05+02:00", now) == at(2030, 1, 2, 1, 4, 5)
    assert parse_point_in_time("90s", now) == now + 90
    assert parse_point_in_time("P1M", now) == at(2026, 3, 3)  # Go's AddDate: Feb 31 is Mar 3
    assert parse_point_in_time("P1DT2H30M", now) == at(2026, 2, 1, 2, 30)
    assert parse_point_in_time("PT1M", now) == now + 60  # M after T: minutes
    assert parse_point_in_time("R0/PT1S", now) == now + 1  # zero repetitions are allowed
    with pytest.raises(ScheduleError, match=r"^repeats not supported for due time$"):
        parse_point_in_time("R1/PT1S", now)
    for text in ("tomorrow", "P1H", "PT1D", "2030-01-02"):
        with pytest.raises(ScheduleError, match=r"^due time format not recognized$"):
            parse_point_in_time(text, now)


def test_job_names():
    check_job_name("app||default||app||a|b@c d")  # a single '|', '@' and spaces are fine
    for name, reason in [
        ("app||default||app||a?b", "must not contain '/', '\\', '#' or '?'"),
        ("app||default||app||a\nb", "must not contain control characters"),
        ("app||default||app||" + "x" * 500, "must be at most 512 characters"),
    ]:
        with pytest.raises(ScheduleError) as raised:
            check_job_name(name)
        assert str(raised.value).endswith(reason)
    with pytest.raises(ScheduleError, match=r'^job name is invalid "app\|\|default\|\|app\|\|a\\nb"'):
        check_job_name("app||default||app||a\nb")
