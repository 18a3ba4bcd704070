"""Rebuilding views in several processes, then swapping them in with one transaction.

A rebuild is CPU-bound Python (decoding, then each projection's rules), so one process uses
one core. ``parallel_rebuild`` splits the projections into groups of about equal cost
(``Projection.cost``), and each group is rebuilt by a process of its own, reading the whole
log, into a view store of its own beside the real one (SQLite lets one writer at a time
into a file, so the groups must not share one). When every group is done, one transaction
of the real store drops the projections' old tables, copies the new rows in (SQLite copies
a table into an empty one of the same schema page by page), and copies their tracking
rows: readers see the old views until that commit and the new ones after it, and a rebuild
killed before it leaves the old views and positions as they were, to be rebuilt again.

Only a file-backed SQLite view store can be rebuilt this way, from a log that can be opened
again in another process (``EventLog.reopener``: the SQLite log by its file, Kafka by its
topic; each worker then reads every partition itself, to the end the log has when it
starts); anything else is rebuilt by ``ProjectionRunner.rebuild`` in this process. Each
projection's tracking row comes from its own worker, so a projection whose worker read a
little further (events appended meanwhile) simply has a later position.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import shutil
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from consumers.projection import (
    Projection,
    ProjectionRunner,
    RunStats,
    _refuse,  # noqa: PLC2701 - the default handler is the only one a worker can use
)
from consumers.views import SQLiteViewStore
from ledger.errors import LedgerError
from ledger.persistence import EventLog


class ParallelRebuildError(LedgerError):
    """A worker of a parallel rebuild failed; the views are left as they were."""


def groups(projections: Sequence[Projection], workers: int) -> list[list[Projection]]:
    """The projections in at most ``workers`` groups of about equal total ``cost``
    (the costliest first, each into the cheapest group so far), in their original order."""
    bins: list[list[Projection]] = [[] for _ in range(max(1, min(workers, len(projections))))]
    load = [0.0] * len(bins)
    for p in sorted(projections, key=lambda p: -p.cost):
        i = load.index(min(load))
        bins[i].append(p)
        load[i] += p.cost
    order = {id(p): n for n, p in enumerate(projections)}
    return [sorted(b, key=lambda p: order[id(p)]) for b in bins if b]


def _opener(log: EventLog) -> Callable[[], EventLog] | None:
    return log.reopener()


def can_rebuild_in_parallel(runner: ProjectionRunner) -> bool:
    """Whether ``parallel_rebuild`` would use worker processes for this runner."""
    store = runner.store
    return (isinstance(store, SQLiteViewStore) and store.path != ":memory:"
            and _opener(runner.log) is not None and runner.on_bad_record is _refuse
            and len(runner.projections) > 1)


def _worker(index: int, open_log: Callable[[], EventLog], projections: list[Projection],
            path: str, cache_mb: int, batch_size: int, dedupe: bool, until: datetime | None,
            out: Any) -> None:
    try:
        log = open_log()
        store = SQLiteViewStore(path, synchronous="OFF", cache_mb=cache_mb)
        try:
            runner = ProjectionRunner(log, store, projections, batch_size=batch_size,
                                      dedupe=dedupe)
            stats = runner.rebuild(progress=lambda n: out.put(("progress", index, n)),
                                   until=until)
        finally:
            store.close()
            log.close()
        out.put(("done", index, (stats.records, stats.applied, stats.bad, stats.duplicates)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        out.put(("error", index, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def parallel_rebuild(
    runner: ProjectionRunner,
    *,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
    until: datetime | None = None,
    batch_size: int | None = None,
) -> RunStats:
    """Rebuild ``runner``'s projections in up to ``workers`` processes (see the module
    docstring); falls back to ``runner.rebuild`` where that is not possible.

    ``progress`` gets the records every worker has read (the slowest one's count).
    Raises ``ParallelRebuildError`` if a worker fails, leaving the views as they were.
    """
    parts = groups(runner.projections, workers)
    if len(parts) < 2 or not can_rebuild_in_parallel(runner):
        return runner.rebuild(progress=progress, until=until, batch_size=batch_size)
    store = runner.store
    assert isinstance(store, SQLiteViewStore)
    open_log = _opener(runner.log)
    assert open_log is not None
    scratch = Path(store.path + ".rebuild")
    shutil.rmtree(scratch, ignore_errors=True)  # a rebuild killed earlier left it
    scratch.mkdir(parents=True)
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    paths = [str(scratch / f"views-{i}.db") for i in range(len(parts))]
    procs = [
        context.Process(
            target=_worker, name=f"pdl-rebuild-{i}", daemon=True,
            args=(i, open_log, part, paths[i], store.cache_mb, batch_size or runner.batch_size,
                  runner.dedupe, until, out))
        for i, part in enumerate(parts)
    ]
    try:
        for proc in procs:
            proc.start()
        read = [0] * len(parts)
        reported = 0
        results: dict[int, tuple[int, int, int, int]] = {}
        while len(results) < len(parts):
            try:
                kind, index, value = out.get(timeout=1.0)
            except queue_module.Empty:
                dead = [p.name for i, p in enumerate(procs)
                        if i not in results and not p.is_alive()]
                if dead:
                    raise ParallelRebuildError(
                        f"rebuild worker {', '.join(dead)} died; the views are unchanged"
                    ) from None
                continue
            if kind == "progress":
                read[index] += value
                if progress and min(read) > reported:
                    progress(min(read) - reported)
                    reported = min(read)
            elif kind == "done":
                results[index] = value
            else:
                raise ParallelRebuildError(
                    f"rebuild of {', '.join(p.name for p in parts[index])} failed; the views "
                    f"are unchanged: {value}"
                )
        for proc in procs:
            proc.join()
        store.adopt(paths, [[p for p in part] for part in parts])
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        out.close()
        shutil.rmtree(scratch, ignore_errors=True)
    if progress and max(read) > reported:
        progress(max(read) - reported)
    stats = RunStats(records=max(r[0] for r in results.values()))
    for _, applied, bad, duplicates in results.values():
        stats.applied += applied
        stats.bad = max(stats.bad, bad)
        stats.duplicates += duplicates
    return stats
