"""Freshness of stages that read the outside world.

A crawl keyed by its config alone is the same output forever: a daily schedule would be
served from the cache and never fetch a page. ``refresh`` names how often the outside world
is read anew; at the start of a run it is turned into a ``snapshot`` label (``2026-11-28``,
``2026-W48``, ``2026-11``) that enters the stage's key, so each period gets its own output
and everything downstream of it follows. An explicit ``snapshot`` pins one: rerunning with
``crawl.snapshot=2026-11-27`` finds yesterday's crawl again.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal, Self

from pydantic import Field

from llm_core.section import Section

Refresh = Literal["never", "daily", "weekly", "monthly"]


def snapshot_label(refresh: Refresh, now: datetime) -> str | None:
    """The label of the period ``now`` falls in (UTC), or None for ``never``."""
    now = now.astimezone(timezone.utc)
    if refresh == "daily":
        return now.strftime("%Y-%m-%d")
    if refresh == "weekly":
        year, week, _ = now.isocalendar()
        return f"{year}-W{week:02d}"
    if refresh == "monthly":
        return now.strftime("%Y-%m")
    return None


class FreshSection(Section):
    """A stage section that reads the outside world: ``refresh`` and ``snapshot`` enter its key."""

    # How often to read the outside world anew; "never" reuses the first output for good.
    refresh: Refresh = "never"
    # The snapshot this output stands for; set by ``resolved`` from ``refresh``, or by hand to pin one.
    snapshot: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")

    def resolved(self, now: datetime) -> Self:
        """This section with ``refresh`` turned into a pinned ``snapshot`` for ``now``'s period.

        The resolved form (``refresh: never, snapshot: <label>``) is what the key hashes, so a
        daily run and a run pinned to the same day share one output."""
        label = self.snapshot or snapshot_label(self.refresh, now)
        if label is None:
            return self
        return self.model_copy(update={"refresh": "never", "snapshot": label})
