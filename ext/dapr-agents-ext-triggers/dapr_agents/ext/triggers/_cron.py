"""A minimal five-field cron parser (minute hour day-of-month month day-of-week), in UTC.

Written here rather than taken from croniter (unmaintained) because the schedule workflow needs
only two things, both pure and deterministic: parse an expression, and give the next fire time
after a moment. Semantics follow Vixie cron: ``*``, lists, ranges, steps (``*/15``, ``1-30/5``,
``5/10``), month and weekday names, ``7`` for Sunday, the ``@hourly`` family of macros, and the
day rule: when both day-of-month and day-of-week are restricted, a day matching either fires.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ._errors import CronError

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    name: i
    for i, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_DAYS = {name: i for i, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# (name, low, high, names)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
# A cron expression that can fire at all does so within about 28 years (weekday x Feb 29 cycles).
_SEARCH_LIMIT = timedelta(days=366 * 29)


def _value(token: str, field: str, low: int, high: int, names: dict[str, int], expression: str) -> int:
    lowered = token.lower()
    if lowered in names:
        return names[lowered]
    if not token.isdigit():
        raise CronError(
            f"cron {expression!r}: {token!r} is not a valid {field} value; "
            f"use a number {low}-{high}" + (f" or a name ({', '.join(names)})" if names else "")
        )
    number = int(token)
    if not low <= number <= high:
        raise CronError(f"cron {expression!r}: {field} {number} is out of range {low}-{high}")
    return number


def _parse_field(text: str, index: int, expression: str) -> tuple[frozenset[int], bool]:
    """The set of values a field allows, and whether it is unrestricted (``*``)."""
    field, low, high, names = _FIELDS[index]
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"cron {expression!r}: empty list item in the {field} field {text!r}")
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(
                    f"cron {expression!r}: step {step_text!r} in the {field} field must be a positive number"
                )
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start = _value(first, field, low, high, names, expression)
            end = _value(last, field, low, high, names, expression)
            if start > end:
                raise CronError(f"cron {expression!r}: range {base!r} in the {field} field runs backwards")
        else:
            start = _value(base, field, low, high, names, expression)
            # "5/10" means 5, 15, 25, ... as in Vixie cron.
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    if index == 4 and 7 in values:  # 7 is Sunday too
        values.discard(7)
        values.add(0)
    return frozenset(values), text == "*"


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression; :meth:`next_after` gives fire times in UTC."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        if not isinstance(expression, str):
            raise CronError(f"cron must be a string like '*/5 * * * *', got {type(expression).__name__}")
        text = _MACROS.get(expression.strip().lower(), expression.strip())
        fields = text.split()
        if len(fields) != 5:
            raise CronError(
                f"cron {expression!r} has {len(fields)} field(s); use five: "
                "minute hour day-of-month month day-of-week (e.g. '*/5 * * * *'), or a macro such as @hourly"
            )
        parsed = [_parse_field(value, i, expression) for i, value in enumerate(fields)]
        cron = cls(
            expression=expression,
            minutes=parsed[0][0],
            hours=parsed[1][0],
            days=parsed[2][0],
            months=parsed[3][0],
            weekdays=parsed[4][0],
            any_day=parsed[2][1],
            any_weekday=parsed[4][1],
        )
        cron.next_after(datetime(2000, 1, 1, tzinfo=timezone.utc))  # e.g. "0 0 30 2 *" never fires
        return cron

    def _day_matches(self, moment: datetime) -> bool:
        in_month = moment.day in self.days
        weekday = (moment.weekday() + 1) % 7  # Python: Monday = 0; cron: Sunday = 0
        in_week = weekday in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after ``moment`` (naive values are taken as UTC)."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        moment = moment.astimezone(timezone.utc)
        current = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = moment + _SEARCH_LIMIT
        while current <= limit:
            if current.month not in self.months:
                year, month = (
                    (current.year + 1, 1) if current.month == 12 else (current.year, current.month + 1)
                )
                current = current.replace(year=year, month=month, day=1, hour=0, minute=0)
                continue
            if not self._day_matches(current):
                current = current.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if current.hour not in self.hours:
                current = current.replace(minute=0) + timedelta(hours=1)
                continue
            if current.minute not in self.minutes:
                current += timedelta(minutes=1)
                continue
            return current
        raise CronError(
            f"cron {self.expression!r} never fires (no matching date in {_SEARCH_LIMIT.days} days)"
        )
