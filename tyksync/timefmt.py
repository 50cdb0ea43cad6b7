"""Moments and durations as manifests and options write them (SPEC section 11).

- `expires:` and `--as-of` take a date (`2027-01-31`) or an RFC 3339 time
  (`2027-01-31T12:00:00Z`, an offset is required). A date in `expires` means the end of
  that day, UTC: the grant holds through the whole day. A date in `--as-of` means the start
  of that day, UTC: "as of February 1st" is after a grant that expired on January 31st.
- `reject_pending_after:` takes a whole number and a unit: `12h`, `30d`, `2w`.
- The Dashboard's dates (`date_created`) are RFC 3339 as Go writes them: `normalize_date`
  gives them one fixed-width UTC form.

Pure functions: no clock is read here. A ValueError's text says what the value must be
(never the value: it may be anything a person pasted).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
_AGE = re.compile(r"([1-9][0-9]{0,5})([hdw])")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}

MOMENT_HELP = "a date (2027-01-31) or an RFC 3339 time (2027-01-31T12:00:00Z)"
AGE_HELP = "a whole number of hours, days or weeks (12h, 30d, 2w)"


def _moment(text: str) -> tuple[datetime, bool]:
    """The moment `text` names, and whether it is a bare date (at midnight UTC)."""
    try:
        return _parse(text)
    except ValueError as e:
        if _DATE.fullmatch(text) or _TIME.fullmatch(text):
            raise ValueError(f"a real date or time ({e})") from None
        raise


def _parse(text: str) -> tuple[datetime, bool]:
    found = _DATE.fullmatch(text)
    if found:
        year, month, day = (int(g) for g in found.groups())
        return datetime.combine(date(year, month, day), time(), timezone.utc), True
    found = _TIME.fullmatch(text)
    if found:
        day_part, clock, fraction, zone = found.groups()
        micro = (fraction or ".0")[1:7].ljust(6, "0")
        offset = "+00:00" if zone in ("Z", "z") else zone
        moment = datetime.fromisoformat(f"{day_part}T{clock}.{micro}{offset}")
        return moment.astimezone(timezone.utc), False
    raise ValueError(MOMENT_HELP)


def parse_expiry(text: str) -> datetime:
    """When an `expires:` value takes effect: a date's end (the next midnight, UTC), or the
    time itself. Raises ValueError (naming the form, not the value) for anything else."""
    moment, is_date = _moment(text)
    return moment + timedelta(days=1) if is_date else moment


def parse_as_of(text: str) -> datetime:
    """The moment `--as-of` names: a date's start (midnight, UTC), or the time itself."""
    return _moment(text)[0]


def parse_age(text: str) -> timedelta:
    found = _AGE.fullmatch(text)
    if not found:
        raise ValueError(AGE_HELP)
    return int(found.group(1)) * _UNITS[found.group(2)]


def utc_text(moment: datetime) -> str:
    """`2027-01-31T12:00:00Z`: a moment as plans and messages show it."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:?\d{2})?$"
)


# The form normalize_date gives: a date in it is returned as it is, without a round trip.
_NORMALIZED = re.compile(r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


def normalize_date(value: str) -> str:
    """RFC 3339 as the Dashboard writes it (Go drops a zero fraction, may carry an offset)
    to one fixed-width UTC form, so that "oldest" can be decided by comparing strings."""
    if len(value) == 27 and _NORMALIZED.fullmatch(value):
        # Already that form: a valid date reads back as itself, an invalid one is kept as
        # it is below too.
        return value
    m = _RFC3339.match(value)
    if not m:
        return value
    day, clock, fraction, zone = m.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    offset = "+00:00" if zone in (None, "Z", "z") else zone
    if ":" not in offset:
        offset = offset[:3] + ":" + offset[3:]
    try:
        parsed = datetime.fromisoformat(f"{day}T{clock}.{micro}{offset}")
    except ValueError:
        return value
    return parsed.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
