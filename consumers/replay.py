"""Point-in-time answers: the views as they would have been with the log as it stood at T.

Today's views have applied everything since T too, so an as-of question is answered from
views built afresh, in memory, from ``log.read(until=T)`` (records the log had accepted
by T, by their ``recorded_at``). Nothing of the on-disk views is touched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from consumers.projection import Projection, ProjectionRunner, RunStats
from consumers.registry import all_projections
from consumers.views import SQLiteViewStore
from ledger.persistence import EventLog


def records_until(log: EventLog, until: datetime | None) -> int:
    """About how many records a replay up to ``until`` reads (for a progress bar)."""
    return sum(o + 1 for o in log.end_position(until).values() if o >= 0)


def views_as_of(
    log: EventLog,
    until: datetime,
    *,
    projections: Sequence[Projection] | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 5000,
) -> tuple[SQLiteViewStore, RunStats]:
    """In-memory views of ``log`` as it stood at ``until``; the caller closes the store.

    ``projections`` (default: all) limits the replay to the views a question needs.
    """
    store = SQLiteViewStore(":memory:")
    try:
        runner = ProjectionRunner(log, store, list(projections or all_projections()),
                                  batch_size=batch_size)
        # a rebuild: the query indexes are made once, after the replay
        stats = runner.rebuild(progress=progress, until=until)
    except BaseException:
        store.close()
        raise
    return store, stats
