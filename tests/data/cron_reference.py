#!/usr/bin/env python3
"""Generates cron_reference.json: next fire times of standard cron expressions
in several time zones, around DST changes, computed with croniter (an
independent, widely used implementation), to check pulsehost's own cron
normalisation against.

Provenance: generated with croniter 7.0.0 and pytz on CPython 3.11:

    python3 -m venv /tmp/cronref && /tmp/cronref/bin/pip install croniter==7.0.0 pytz
    /tmp/cronref/bin/python tests/data/cron_reference.py > tests/data/cron_reference.json

croniter's answers are kept as they are, with two deliberate exceptions where
pulsehost follows Vixie cron instead. Every case an exception changes carries
a "deviates_from_reference" field with the reason, and the JSON header counts
them ("deviating_cases", "deviations"):

* In a repeated autumn hour croniter fires every matching wall-clock time at
  both of its instants. pulsehost does so only when the hour field starts with
  '*' (such schedules follow real time); a job with a fixed hour (number, list
  or range) runs a repeated time once, at its first instant. So for fixed-hour
  expressions an occurrence whose wall-clock time was already reached is
  dropped.
* Should croniter yield the same instant twice (times inside a spring-forward
  gap all mapped to its end), it is kept once.

Any other disagreement is a failure of the generator (an assertion), not a
silent adjustment. pulsehost expressions put the optional seconds field first;
croniter wants it last, so it is moved.

Cases whose base lies just before or inside a repeated hour list every
occurrence up to three hours after the base (at least five), so that the
repeated hour is crossed; the others list five.
"""
import json
from datetime import datetime, timedelta

import pytz
from croniter import croniter

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata"]
# Bases: ordinary days and the days around DST changes in 2026, as wall-clock
# times in the zone.
BASES = {
    "UTC": ["2026-11-23T10:07:00", "2026-02-27T23:59:00"],
    "Europe/Berlin": ["2026-03-28T12:00:00", "2026-10-24T12:00:00"],
    "America/New_York": ["2026-03-07T12:00:00", "2026-10-31T12:00:00"],
    "Australia/Sydney": ["2026-04-04T12:00:00", "2026-10-03T12:00:00"],
    "Asia/Kolkata": ["2026-06-15T08:00:00"],
}
# Bases just before and inside the repeated hour (first and second copy),
# with their UTC offset, since the wall-clock time alone is ambiguous.
FALL_BACK_BASES = {
    "Europe/Berlin": [
        "2026-10-25T01:59:30+02:00", "2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00",
    ],
    "America/New_York": [
        "2026-11-01T00:59:30-04:00", "2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00",
    ],
    "Australia/Sydney": [
        "2026-04-05T01:59:30+11:00", "2026-04-05T02:30:00+11:00", "2026-04-05T02:30:00+10:00",
    ],
}
EXPRESSIONS = [
    "* * * * *", "*/15 * * * *", "0 * * * *", "30 2 * * *", "30 1 * * *",
    "0 2 * * *", "*/30 1-3 * * *", "0 0 * * 0", "0 0 * * 7", "0 9 * * 1-5",
    "0 9 * * MON-FRI", "15 10 * * SAT,SUN", "5 4 * * sun", "0 0 1 * *", "0 0 1 1 *",
    "0 12 15 * *", "0 0 1 * FRI", "0 0 13 * 5", "0 0 1,15 * 3", "0 6 * JAN,JUL *",
    "0 6 1-7 * 1", "0 22 * * 1-5", "23 0-20/2 * * *", "0 0,12 * * *", "*/5 9-17 * * 1-5",
    "0 0 29 2 *", "0 0 31 * *", "45 23 * * 6", "0 3 * * 0-6/2", "0 0 * * 1,3,5",
    "0 8-18/3 * * *", "10,40 * * * *", "59 23 31 12 *", "0 0 * 2 *", "0 17 * * 5",
    "0 4 8-14 * *", "1 2 3 4 *", "0 12 * * 2-4", "@hourly", "@daily", "@weekly",
    "@monthly", "@yearly", "30 */10 * * * *", "0 0 12 * * MON",
    "*/20 * * * *", "0 */2 * * *", "30 * * * *", "0 1-2 * * *", "15 1,2 * * *",
]
SHORTHANDS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0",
              "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *"}
COUNT = 5
HORIZON = timedelta(hours=3)

FIXED_HOUR = ("fixed-hour job in a repeated autumn hour runs once, at its first instant "
              "(Vixie cron); croniter fires it at both instants")
SAME_INSTANT = ("times inside a spring-forward gap fire once, at the gap's end; "
                "croniter yields that instant more than once")


def fields(expression):
    return SHORTHANDS.get(expression, expression).split()


def for_croniter(expression):
    f = fields(expression)
    if len(f) == 6:  # seconds first (pulsehost) -> seconds last (croniter)
        f = f[1:] + f[:1]
    return " ".join(f)


def hour_is_fixed(expression):
    f = fields(expression)
    return not f[2 if len(f) == 6 else 1].startswith("*")


def utc(t):
    return t.astimezone(pytz.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def wall_reached(start, tz):
    """The latest wall-clock time shown at or before `start`: after the clocks
    go back, the time just before the change is later than `start`'s own."""
    here = start.astimezone(pytz.utc)
    wall = lambda t: t.astimezone(tz).replace(tzinfo=None)
    offset = lambda t: t.astimezone(tz).utcoffset()
    low = here - HORIZON
    if offset(low) <= offset(here):
        return wall(here)
    high = here  # bisect to the last second with the old, larger offset
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if offset(middle) == offset(low):
            low = middle
        else:
            high = middle
    return max(wall(here), wall(low))


def occurrences(expression, tz, start, horizon):
    """pulsehost's expected occurrences after `start`, croniter's raw ones for
    as many, and the reasons for any difference."""
    it = croniter(for_croniter(expression), start)
    fixed = hour_is_fixed(expression)
    out, raw, dropped = [], [], []
    # A fixed-hour job has already run every wall-clock time reached so far.
    last_wall, last_instant = wall_reached(start, tz), None
    while True:
        t = it.get_next(datetime)
        wall, instant = t.replace(tzinfo=None), t.astimezone(pytz.utc)
        raw.append(instant)
        if fixed and wall <= last_wall:
            dropped.append((len(raw) - 1, FIXED_HOUR))
            continue
        if instant == last_instant:
            dropped.append((len(raw) - 1, SAME_INSTANT))
            continue
        assert last_instant is None or instant > last_instant, (expression, start, t)
        enough = len(out) >= COUNT and (horizon is None or instant > horizon)
        if enough:
            break
        last_wall, last_instant = max(last_wall, wall), instant
        out.append(instant)
    reasons = sorted({why for index, why in dropped if index < len(out)})
    assert (out != raw[:len(out)]) == bool(reasons), (expression, start)
    return out, reasons


def case(expression, zone, start, horizon):
    nxt, reasons = occurrences(expression, pytz.timezone(zone), start, horizon)
    c = {"expression": expression, "timezone": zone, "after": utc(start), "next": [utc(t) for t in nxt]}
    if reasons:
        c["deviates_from_reference"] = " / ".join(reasons)
    for why in reasons:
        deviations[why] = deviations.get(why, 0) + 1
    return c


cases, deviations = [], {}
for zone in ZONES:
    tz = pytz.timezone(zone)
    starts = [(tz.localize(datetime.fromisoformat(b)), None) for b in BASES[zone]]
    for base in FALL_BACK_BASES.get(zone, []):
        start = datetime.fromisoformat(base).astimezone(tz)
        starts.append((start, start + HORIZON))
    for start, horizon in starts:
        for expression in EXPRESSIONS:
            cases.append(case(expression, zone, start, horizon))

deviating = sum(1 for c in cases if "deviates_from_reference" in c)
print(json.dumps({
    "generator": "croniter 7.0.0 via tests/data/cron_reference.py",
    "provenance": (
        f"{len(cases)} cases; croniter's answers unchanged except in {deviating} cases, each marked "
        "with deviates_from_reference: see the counts under deviations and the reasons in "
        "tests/data/cron_reference.py"
    ),
    "deviating_cases": deviating,
    "deviations": deviations,
    "cases": cases,
}, indent=1))
