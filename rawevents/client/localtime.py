"""Project-local `time` (Mixpanel's export rendering) back to a true UTC epoch, DST-correct.

An exported `time` is the UTC epoch plus the UTC offset in force at that instant. Most local
times have one UTC instant; the repeated hour when DST ends has two. Exports are ordered by the
true instant, so a converter that reads rows in export order picks, of the candidates, the
earliest one not before the previous row's instant: rows before the change get the first
reading, rows after it the second. Only an event alone in the repeated hour after a later-hour
event in the same file can be ambiguous; that is inherent to the local rendering (docs/client.md).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rawevents.client.transport import ClientError

_EPOCH = dt.datetime(1970, 1, 1)
MS_THRESHOLD = 100_000_000_000  # a `time` this large is milliseconds (year 5138 in seconds)


def load_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ClientError(f"unknown timezone {name!r}") from exc


class LocalToUtc:
    """Converts local seconds (or milliseconds) to UTC, statefully over rows in time order."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._last = -(2**62)

    def __call__(self, value: int | float) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value
        millis = abs(value) >= MS_THRESHOLD
        seconds = value // 1000 if millis else value
        whole = int(seconds)
        utc = self._seconds(whole)
        self._last = utc
        shift = (utc - whole) * 1000 if millis else utc - whole
        return value + shift

    def _seconds(self, local: int) -> int:
        naive = _EPOCH + dt.timedelta(seconds=local)
        candidates = sorted(
            {
                local - int(offset.total_seconds())
                for fold in (0, 1)
                if (offset := naive.replace(tzinfo=self.zone, fold=fold).utcoffset()) is not None
            }
        )
        valid = [utc for utc in candidates if self._local(utc) == local] or candidates
        later = [utc for utc in valid if utc >= self._last]
        return later[0] if later else valid[-1]

    def _local(self, utc: int) -> int:
        instant = dt.datetime.fromtimestamp(utc, dt.UTC)
        offset = instant.astimezone(self.zone).utcoffset()
        return utc + int(offset.total_seconds()) if offset is not None else utc
