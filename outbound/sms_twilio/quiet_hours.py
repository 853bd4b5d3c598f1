"""Quiet hours in the recipient's own time zone: when a message may not go out, and for how long.

A window is a wall-clock span in a zone, e.g. 21:00-08:00.  When ``start`` is later than ``end``
the window wraps midnight.  The wait is measured between UTC instants (never by subtracting two
local times, which is wrong across a daylight-saving change), so "until 08:00" is right on the
night the clocks move.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# a deferral is never shorter than this, so a rounding edge cannot spin the worker
MIN_WAIT_S = 1.0


def parse_clock(value: str) -> time:
    """Parse ``HH:MM`` (24-hour) into a time; raise ValueError otherwise."""
    hours, sep, minutes = value.partition(":")
    if not sep or len(hours) != 2 or len(minutes) != 2 or not (hours + minutes).isdigit():
        raise ValueError("a time of day must look like HH:MM (24-hour), e.g. 21:00")
    h, m = int(hours), int(minutes)
    if h > 23 or m > 59:
        raise ValueError("a time of day must be between 00:00 and 23:59")
    return time(h, m)


def zone_of(name: str) -> ZoneInfo | None:
    """The IANA zone called ``name``, or None when there is no such zone."""
    if not name or len(name) > 64 or ".." in name or name.startswith("/"):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class QuietWindow:
    """A daily span of local wall-clock time in which no message goes out."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError("quiet hours need different start and end times")

    @property
    def wraps_midnight(self) -> bool:
        """True when the window runs over midnight (start later than end)."""
        return self.start > self.end

    def seconds_left(self, zone: ZoneInfo, now: datetime) -> float | None:
        """Seconds until the window ends in ``zone``, or None when ``now`` is outside it.

        Args:
            zone: The recipient's time zone.
            now: The current instant (timezone-aware).

        Returns:
            None outside quiet hours; else the wait until the next ``end`` in ``zone``.
        """
        local = now.astimezone(zone)
        wall = local.time().replace(tzinfo=None)
        if self.wraps_midnight:
            if wall >= self.start:
                end_day = local.date() + timedelta(days=1)
            elif wall < self.end:
                end_day = local.date()
            else:
                return None
        elif self.start <= wall < self.end:
            end_day = local.date()
        else:
            return None
        ends = datetime.combine(end_day, self.end, tzinfo=zone)
        wait = (ends.astimezone(UTC) - now.astimezone(UTC)).total_seconds()
        return max(wait, MIN_WAIT_S)
