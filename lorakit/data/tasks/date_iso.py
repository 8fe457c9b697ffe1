"""date-iso: a date written in one of many ways (March 5, 2021 / the 5th of March 2021 /
Fri 5 Mar...) -> ``2021-03-05``."""
from __future__ import annotations

import datetime
import random

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DATE_FORMATS = (
    "{M} {d}, {y}", "{d} {M} {y}", "{Mon} {d}, {y}", "{Mon} {th}, {y}", "the {th} of {M} {y}",
    "{W}, {M} {d}, {y}", "{W} {d} {M} {y}", "{M} {th} {y}", "{y}, {M} {d}", "{d}-{Mon}-{y}",
)


def _ordinal(d: int) -> str:
    return f"{d}{'th' if 10 <= d % 100 < 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(d % 10, 'th')}"


def make(rng: random.Random) -> tuple[str, str]:
    """(prompt, answer): a day between 1950 and 2039 in one of the formats; the answer is ISO 8601."""
    day = datetime.date(1950, 1, 1) + datetime.timedelta(days=rng.randrange(365 * 90))
    text = rng.choice(_DATE_FORMATS).format(
        M=MONTHS[day.month - 1], Mon=_MONTH_ABBR[day.month - 1], d=day.day, th=_ordinal(day.day),
        y=day.year, W=_WEEKDAYS[day.weekday()])
    return f"Convert to an ISO date:\n{text}", day.isoformat()


def check(prediction: str, reference: str) -> dict:
    """Exact match, ignoring surrounding spaces and a final full stop."""
    return {"correct": prediction.strip().rstrip(".").strip() == reference.strip()}

