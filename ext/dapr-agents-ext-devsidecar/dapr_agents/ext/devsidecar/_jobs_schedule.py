"""Job schedules as Dapr's scheduler reads them: cron specs, due times, TTLs and their errors.

A port of what daprd 1.18's scheduler runs (github.com/diagridio/go-etcd-cron v0.12.6, its
``internal/scheduler/builder.go``, ``repeats.go``, ``oneshot.go`` and
``internal/api/validator/validator.go``; the cron parser of github.com/dapr/kit v0.18.2
``cron/parser.go``, ``spec.go``, ``constantdelay.go``; the ISO 8601 durations of its
``time/time.go``), with Go's wording in every error, because daprd hands those texts to the client.
Times are epoch seconds (floats); cron fields are matched on the wall clock of the sidecar's local
time zone (daprd's scheduler uses its own), or of a ``TZ=``/``CRON_TZ=`` prefix.
"""

from __future__ import annotations

import calendar
import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Protocol


class ScheduleError(ValueError):
    """A job the scheduler refuses; the message is the scheduler's."""


# -- Go's time.ParseDuration ------------------------------------------------------------------

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def go_quote(text: str) -> str:
    """``%q`` of a Go string (``strconv.Quote``), close enough for names and specs."""
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char in "\a\b\f\n\r\t\v":
            out.append(json.dumps(char)[1:-1] if char in "\b\f\n\r\t" else {"\a": "\\a", "\v": "\\v"}[char])
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            code = ord(char)
            out.append(
                f"\\x{code:02x}"
                if code < 0x80
                else (f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
            )
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration string (``1h30m``, ``-1.5s``, ``0``); Go's error otherwise."""
    original = text
    invalid = ScheduleError(f"time: invalid duration {go_quote(original)}")
    sign = 1.0
    if text[:1] in "+-" and text:
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise invalid
    total = 0.0
    while text:
        number = re.match(r"[0-9]*(\.[0-9]*)?", text)
        assert number is not None
        digits = number.group(0)
        if digits in ("", "."):
            raise invalid
        text = text[len(digits) :]
        unit_match = re.match(r"[^0-9.]*", text)
        assert unit_match is not None
        unit = unit_match.group(0)
        if not unit:
            raise ScheduleError(f"time: missing unit in duration {go_quote(original)}")
        if unit not in _UNITS:
            raise ScheduleError(f"time: unknown unit {go_quote(unit)} in duration {go_quote(original)}")
        text = text[len(unit) :]
        total += float(digits) * _UNITS[unit]
    return sign * total


# -- points in time ---------------------------------------------------------------------------

_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def parse_rfc3339(text: str) -> float | None:
    found = _RFC3339.fullmatch(text)
    if found is None:
        return None
    year, month, day, hour, minute, second = (int(found.group(i)) for i in range(1, 7))
    fraction = float(found.group(7) or 0)
    zone = found.group(8)
    offset = (
        0 if zone == "Z" else (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60) * (-1 if zone[0] == "-" else 1)
    )
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError:
        return None
    return moment.timestamp() + fraction - offset


def _iso_error(text: str) -> ScheduleError:
    return ScheduleError("unsupported ISO8601 duration format: " + text)


def parse_iso8601_duration(text: str) -> tuple[int, int, int, float, int]:
    """(years, months, days, seconds, repetitions) as dapr/kit's ``ParseISO8601Duration``."""
    repetition = -1
    length = len(text)
    if length < 2:
        raise _iso_error(text)
    i = 0
    if text[0] == "R":
        while True:
            i += 1
            if i == length or text[i] == "/":
                break
        if i - 1 < 1:
            raise _iso_error(text)
        try:
            repetition = _go_atoi(text[1:i])
        except ValueError:
            raise _iso_error(text) from None
        i += 1
        if i >= length:
            return 0, 0, 0, 0.0, repetition
    if text[i] != "P":
        raise _iso_error(text)
    i += 1
    start, in_time = i, False
    years = months = days = 0
    seconds = 0.0
    while i < length:
        char = text[i]
        if char == "T":
            if start != i:
                raise _iso_error(text)
            in_time, start = True, i + 1
        elif char in "YWDHSM":
            if start == i or (char in "YWD" and in_time) or (char in "HS" and not in_time):
                raise _iso_error(text)
            try:
                value = _go_atoi(text[start:i])
            except ValueError:
                raise _iso_error(text) from None
            if char == "Y":
                years = value
            elif char == "W":
                days += value * 7
            elif char == "D":
                days += value
            elif char == "H":
                seconds += value * 3600
            elif char == "S":
                seconds += value
            elif in_time:
                seconds += value * 60
            else:
                months = value
            start = i + 1
        i += 1
    return years, months, days, seconds, repetition


def _go_atoi(text: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError(text)
    return int(text)


def add_date(moment: float, years: int, months: int, days: int) -> float:
    """Go's ``Time.AddDate`` in UTC (overflowing days and months roll over, Jan 31 + 1 month is
    Mar 3)."""
    base = datetime.fromtimestamp(moment, tz=timezone.utc)
    month_index = base.month - 1 + months
    year = base.year + years + month_index // 12
    month = month_index % 12 + 1
    first = datetime(
        year, month, 1, base.hour, base.minute, base.second, base.microsecond, tzinfo=timezone.utc
    )
    return (first + timedelta(days=base.day - 1 + days)).timestamp()


def parse_point_in_time(text: str, now: float) -> float:
    """The scheduler's ``parsePointInTime``: RFC 3339, a Go duration from ``now``, or a
    non-repeating ISO 8601 duration from ``now``."""
    moment = parse_rfc3339(text)
    if moment is not None:
        return moment
    try:
        return now + parse_go_duration(text)
    except ScheduleError:
        pass
    try:
        years, months, days, seconds, repeats = parse_iso8601_duration(text)
    except ScheduleError:
        raise ScheduleError("due time format not recognized") from None
    if repeats > 0:
        raise ScheduleError("repeats not supported for due time")
    return add_date(now, years, months, days) + seconds


# -- cron ---------------------------------------------------------------------------------------


class CronSchedule(Protocol):
    def next(self, after: float) -> float | None: ...


@dataclass(frozen=True)
class _Bounds:
    low: int
    high: int
    names: dict[str, int] | None = None


_SECONDS = _Bounds(0, 59)
_MINUTES = _Bounds(0, 59)
_HOURS = _Bounds(0, 23)
_DOM = _Bounds(1, 31)
_MONTHS = _Bounds(1, 12, {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m})
_DOW = _Bounds(0, 6, {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6})
_STAR = 1 << 63


def _bits(low: int, high: int, step: int) -> int:
    return sum(1 << i for i in range(low, high + 1, step))


def _all(bounds: _Bounds) -> int:
    return _bits(bounds.low, bounds.high, 1) | _STAR


def _parse_int(expr: str) -> int:
    try:
        number = _go_atoi(expr)
    except ValueError:
        raise ScheduleError(
            f"failed to parse int from {expr}: strconv.Atoi: parsing {go_quote(expr)}: invalid syntax"
        ) from None
    if number < 0:
        raise ScheduleError(f"negative number ({number}) not allowed: {expr}")
    return number


def _int_or_name(expr: str, bounds: _Bounds) -> int:
    if bounds.names is not None and expr.lower() in bounds.names:
        return bounds.names[expr.lower()]
    return _parse_int(expr)


def _range(expr: str, bounds: _Bounds) -> int:
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    single = len(low_and_high) == 1
    extra = 0
    if low_and_high[0] in ("*", "?"):
        start, end, extra = bounds.low, bounds.high, _STAR
    else:
        start = _int_or_name(low_and_high[0], bounds)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _int_or_name(low_and_high[1], bounds)
        else:
            raise ScheduleError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _parse_int(range_and_step[1])
        if single:
            end = bounds.high
        if step > 1:
            extra = 0
    else:
        raise ScheduleError(f"too many slashes: {expr}")
    if start < bounds.low:
        raise ScheduleError(f"beginning of range ({start}) below minimum ({bounds.low}): {expr}")
    if end > bounds.high:
        raise ScheduleError(f"end of range ({end}) above maximum ({bounds.high}): {expr}")
    if start > end:
        raise ScheduleError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise ScheduleError(f"step of range should be a positive number: {expr}")
    return _bits(start, end, step) | extra


def _field(text: str, bounds: _Bounds) -> int:
    bits = 0
    for expr in (part for part in text.split(",") if part):
        bits |= _range(expr, bounds)
    return bits


def _wall(moment: float, zone: tzinfo | None) -> datetime:
    return datetime.fromtimestamp(moment, tz=zone).replace(tzinfo=None)


def _instant(wall: datetime, zone: tzinfo | None) -> float:
    return wall.replace(tzinfo=zone).timestamp() if zone is not None else wall.timestamp()


@dataclass(frozen=True)
class SpecSchedule:
    """A six-field cron spec as bit sets, matched on the wall clock of ``zone`` (local if None)."""

    second: int
    minute: int
    hour: int
    dom: int
    month: int
    dow: int
    zone: tzinfo | None = None

    def _day_matches(self, wall: datetime) -> bool:
        dom_match = bool(1 << wall.day & self.dom)
        dow_match = bool(1 << ((wall.weekday() + 1) % 7) & self.dow)
        if self.dom & _STAR or self.dow & _STAR:
            return dom_match and dow_match
        return dom_match or dow_match

    def next(self, after: float) -> float | None:
        # spec.go's Next, on naive wall-clock times of the schedule's zone.
        wall = _wall(after, self.zone).replace(microsecond=0) + timedelta(seconds=1)
        added = False
        year_limit = wall.year + 5
        while True:
            if wall.year > year_limit:
                return None
            wrapped = False
            while not (1 << wall.month & self.month):
                if not added:
                    added = True
                    wall = wall.replace(day=1, hour=0, minute=0, second=0)
                wall = wall.replace(year=wall.year + wall.month // 12, month=wall.month % 12 + 1)
                if wall.month == 1:
                    wrapped = True
                    break
            if wrapped:
                continue
            while not self._day_matches(wall):
                if not added:
                    added = True
                    wall = wall.replace(hour=0, minute=0, second=0)
                wall += timedelta(days=1)
                if wall.day == 1:
                    wrapped = True
                    break
            if wrapped:
                continue
            while not (1 << wall.hour & self.hour):
                if not added:
                    added = True
                    wall = wall.replace(minute=0, second=0)
                wall += timedelta(hours=1)
                if wall.hour == 0:
                    wrapped = True
                    break
            if wrapped:
                continue
            while not (1 << wall.minute & self.minute):
                if not added:
                    added = True
                    wall = wall.replace(second=0)
                wall += timedelta(minutes=1)
                if wall.minute == 0:
                    wrapped = True
                    break
            if wrapped:
                continue
            while not (1 << wall.second & self.second):
                added = True
                wall += timedelta(seconds=1)
                if wall.second == 0:
                    wrapped = True
                    break
            if wrapped:
                continue
            return _instant(wall, self.zone)


@dataclass(frozen=True)
class EverySchedule:
    """``@every <duration>``: dapr/kit's ConstantDelaySchedule (not rounded to seconds)."""

    delay: float

    def next(self, after: float) -> float | None:
        return after + self.delay


def _descriptor(spec: str, zone: tzinfo | None) -> CronSchedule:
    zero = 1  # bit 0 (second/minute/hour 0)
    if spec in ("@yearly", "@annually"):
        return SpecSchedule(zero, zero, zero, 1 << 1, 1 << 1, _all(_DOW), zone)
    if spec == "@monthly":
        return SpecSchedule(zero, zero, zero, 1 << 1, _all(_MONTHS), _all(_DOW), zone)
    if spec == "@weekly":
        return SpecSchedule(zero, zero, zero, _all(_DOM), _all(_MONTHS), 1, zone)
    if spec in ("@daily", "@midnight"):
        return SpecSchedule(zero, zero, zero, _all(_DOM), _all(_MONTHS), _all(_DOW), zone)
    if spec == "@hourly":
        return SpecSchedule(zero, zero, _all(_HOURS), _all(_DOM), _all(_MONTHS), _all(_DOW), zone)
    if spec.startswith("@every "):
        try:
            return EverySchedule(parse_go_duration(spec[len("@every ") :]))
        except ScheduleError as exc:
            raise ScheduleError(f"failed to parse duration {spec}: {exc}") from None
    raise ScheduleError(f"unrecognized descriptor: {spec}")


def parse_cron(spec: str) -> CronSchedule:
    """dapr/kit's parser with ``Second | Minute | Hour | Dom | Month | Dow | Descriptor``."""
    if not spec:
        raise ScheduleError("empty spec string")
    zone: tzinfo | None = None
    if spec.startswith("TZ=") or spec.startswith("CRON_TZ="):
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        space = spec.find(" ")
        name = spec[spec.find("=") + 1 : space if space >= 0 else len(spec) - 1]
        try:
            zone = ZoneInfo(name) if name not in ("", "UTC") else timezone.utc
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"provided bad location {name}: unknown time zone {name}") from None
        spec = spec[space:].strip() if space >= 0 else ""
    if spec.startswith("@"):
        return _descriptor(spec, zone)
    fields = spec.split()
    if len(fields) != 6:
        raise ScheduleError(f"expected exactly 6 fields, found {len(fields)}: [{' '.join(fields)}]")
    return SpecSchedule(
        _field(fields[0], _SECONDS),
        _field(fields[1], _MINUTES),
        _field(fields[2], _HOURS),
        _field(fields[3], _DOM),
        _field(fields[4], _MONTHS),
        _field(fields[5], _DOW),
        zone,
    )


# -- job names ------------------------------------------------------------------------------------

_MAX_NAME_BYTES = 512


def check_job_name(full_name: str) -> None:
    """go-etcd-cron's ``validator.JobName`` on the scheduler's full name
    (``app||<namespace>||<app id>||<name>``)."""
    if not full_name:
        raise ScheduleError("job name cannot be empty")
    if len(full_name.encode()) > _MAX_NAME_BYTES:
        raise ScheduleError(
            f"job name is invalid {go_quote(full_name)}: must be at most {_MAX_NAME_BYTES} characters"
        )
    if any(char in "#?/\\" for char in full_name):
        raise ScheduleError(
            f"job name is invalid {go_quote(full_name)}: must not contain '/', '\\', '#' or '?'"
        )
    if any(unicodedata.category(char) == "Cc" for char in full_name):
        raise ScheduleError(f"job name is invalid {go_quote(full_name)}: must not contain control characters")
    if full_name in (".", ".."):
        raise ScheduleError(
            f"job name is invalid {go_quote(full_name)}: must not be a path traversal sequence"
        )
