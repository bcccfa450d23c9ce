#!/usr/bin/env python3
"""Generates cron_reference.json: next fire times of standard cron expressions
in several time zones, around DST changes, computed with croniter (an
independent, widely used implementation), to check pulsehost's own cron
normalisation against.

Provenance: generated with croniter 7.0.0 and pytz on CPython 3.11:

    python3 -m venv /tmp/cronref && /tmp/cronref/bin/pip install croniter==7.0.0 pytz
    /tmp/cronref/bin/python tests/data/cron_reference.py > tests/data/cron_reference.json

Two documented adjustments turn croniter's answers into pulsehost's semantics:
croniter fires twice in a repeated autumn hour (once per UTC offset) where
pulsehost fires each wall-clock time once, so an occurrence whose wall-clock
time was already reached is dropped; and equal instants (several times of a
spring-forward gap mapped to its end) are kept once. pulsehost expressions put
the optional seconds field first; croniter wants it last, so it is moved.
"""
import json
from datetime import datetime

import pytz
from croniter import croniter

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata"]
# Bases: ordinary days and the days around DST changes in 2026.
BASES = {
    "UTC": ["2026-11-23T10:07:00", "2026-02-27T23:59:00"],
    "Europe/Berlin": ["2026-03-28T12:00:00", "2026-10-24T12:00:00"],
    "America/New_York": ["2026-03-07T12:00:00", "2026-10-31T12:00:00"],
    "Australia/Sydney": ["2026-04-04T12:00:00", "2026-10-03T12:00:00"],
    "Asia/Kolkata": ["2026-06-15T08:00:00"],
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
]
SHORTHANDS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0",
              "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *"}
COUNT = 5


def for_croniter(expression):
    expression = SHORTHANDS.get(expression, expression)
    fields = expression.split()
    if len(fields) == 6:  # seconds first (pulsehost) -> seconds last (croniter)
        fields = fields[1:] + fields[:1]
    return " ".join(fields)


def occurrences(expression, zone, base):
    tz = pytz.timezone(zone)
    start = tz.localize(datetime.fromisoformat(base))
    it = croniter(for_croniter(expression), start)
    out, last_wall, last_instant = [], None, None
    while len(out) < COUNT:
        t = it.get_next(datetime)
        wall = t.replace(tzinfo=None)
        instant = t.astimezone(pytz.utc)
        if last_wall is not None and wall <= last_wall:
            continue  # the repeated hour: this wall-clock time already fired
        if instant == last_instant:
            continue
        last_wall, last_instant = wall, instant
        out.append(instant.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return start.astimezone(pytz.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), out


cases = []
for zone in ZONES:
    for base in BASES[zone]:
        for expression in EXPRESSIONS:
            after, nxt = occurrences(expression, zone, base)
            cases.append({"expression": expression, "timezone": zone, "after": after, "next": nxt})
print(json.dumps({"generator": "croniter 7.0.0 via tests/data/cron_reference.py", "cases": cases}, indent=1))
