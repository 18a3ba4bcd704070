"""Rebuilding views in several processes, then swapping them in with one transaction.

A rebuild is CPU-bound Python (decoding, then each projection's rules), so one process uses
one core. ``parallel_rebuild`` splits the work one of two ways:

- **by partition** (Kafka: ``EventLog.self_contained_partitions``): each worker rebuilds
  every projection from its own share of the topic's partitions. Every person's events sit
  in one partition and every event about no one is copied to every partition, so each
  share is a whole history for its people, and no record is read twice (except those
  copies). The views are merged at the end (``SQLiteViewStore.merge``,
  ``Projection.merge``): people's rows are disjoint, rows about no one are kept once.
- **by projection** (the SQLite log, one partition): the projections in groups of about
  equal cost (``Projection.cost``), each group rebuilt by a process of its own reading the
  whole log; the groups' tables are copied in (``SQLiteViewStore.adopt``).

Each worker writes into a view store of its own beside the real one (SQLite lets one
writer at a time into a file). When every worker is done, one transaction of the real
store drops the projections' old tables, copies the new rows in and the tracking rows:
readers see the old views until that commit and the new ones after it, and a rebuild
killed before it leaves the old views and positions as they were, to be rebuilt again.

Only a file-backed SQLite view store can be rebuilt this way, from a log that can be opened
again in another process (``EventLog.reopener``: the SQLite log by its file, Kafka by its
topic; each worker reads to the end the log has when it starts); anything else is rebuilt by
``ProjectionRunner.rebuild`` in this process. Each projection's tracking row (by partition)
comes from the worker that read that partition, so one that read a little further (events
appended meanwhile) simply has a later position.
"""

from __future__ import annotations

import logging
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
from ledger.errors import IntegrityError, LedgerError
from ledger.persistence import EventLog

log = logging.getLogger(__name__)


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


def shares(log: EventLog, workers: int) -> list[list[int]] | None:
    """The log's partitions in at most ``workers`` shares of about equal records (the
    largest partition first, each into the smallest share so far), or None if this log
    cannot be rebuilt a share of partitions at a time (or has one partition)."""
    if not log.self_contained_partitions or workers < 2:
        return None
    ends = log.end_position()  # every partition, with its last offset
    partitions = sorted(ends)
    n = min(workers, len(partitions))
    if n < 2:
        return None
    split: list[list[int]] = [[] for _ in range(n)]
    load = [0] * n
    for partition in sorted(partitions, key=lambda p: (-ends.get(p, -1), p)):
        i = load.index(min(load))
        split[i].append(partition)
        load[i] += ends.get(partition, -1) + 1
    return [sorted(share) for share in split]


def _tasks(runner: ProjectionRunner, workers: int
           ) -> tuple[list[tuple[list[Projection], list[int] | None]], bool]:
    """What each worker rebuilds: (projections, partitions or None for all), and whether
    the split is by partition."""
    split = shares(runner.log, workers)
    if split is not None:
        return [(list(runner.projections), share) for share in split], True
    return [(part, None) for part in groups(runner.projections, workers)], False


def _workers_can_build(runner: ProjectionRunner) -> bool:
    """Whether other processes can rebuild this runner's views: a store file to put theirs
    beside, a log they can open again, and no bad-record handler of this process's."""
    store = runner.store
    return (isinstance(store, SQLiteViewStore) and store.path != ":memory:"
            and _opener(runner.log) is not None and runner.on_bad_record is _refuse)


def can_rebuild_in_parallel(runner: ProjectionRunner, workers: int = 2) -> bool:
    """Whether ``parallel_rebuild`` would use worker processes for this runner."""
    return _workers_can_build(runner) and len(_tasks(runner, workers)[0]) > 1


def _worker(index: int, open_log: Callable[[], EventLog], projections: list[Projection],
            partitions: list[int] | None, path: str, cache_mb: int, batch_size: int,
            dedupe: bool, until: datetime | None, out: Any) -> None:
    try:
        log = open_log()
        store = SQLiteViewStore(path, synchronous="OFF", cache_mb=cache_mb)
        try:
            runner = ProjectionRunner(log, store, projections, batch_size=batch_size,
                                      dedupe=dedupe)
            stats = runner.rebuild(progress=lambda n: out.put(("progress", index, n)),
                                   until=until, partitions=partitions,
                                   indexes=partitions is None)
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

    ``progress`` gets the records read: split by partition, all workers' together; split
    by projection, the slowest worker's (each reads the whole log).
    Raises ``ParallelRebuildError`` if a worker fails, leaving the views as they were. If
    the shares of a split by partition overlap (a person's events in two partitions), it
    says so in the log and rebuilds in this process instead.
    """
    if not _workers_can_build(runner):
        return runner.rebuild(progress=progress, until=until, batch_size=batch_size)
    tasks, by_partition = _tasks(runner, workers)
    if len(tasks) < 2:
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
    paths = [str(scratch / f"views-{i}.db") for i in range(len(tasks))]
    procs = [
        context.Process(
            target=_worker, name=f"pdl-rebuild-{i}", daemon=True,
            args=(i, open_log, part, partitions, paths[i], store.cache_mb,
                  batch_size or runner.batch_size, runner.dedupe, until, out))
        for i, (part, partitions) in enumerate(tasks)
    ]
    read = [0] * len(tasks)

    def done_reading() -> int:
        return sum(read) if by_partition else min(read)

    repeated = 0
    overlapped = False
    reported = 0
    results: dict[int, tuple[int, int, int, int]] = {}
    try:
        for proc in procs:
            proc.start()
        while len(results) < len(tasks):
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
                if progress and done_reading() > reported:
                    progress(done_reading() - reported)
                    reported = done_reading()
            elif kind == "done":
                results[index] = value
            else:
                part, partitions = tasks[index]
                what = (f"partitions {', '.join(map(str, partitions))}"
                        if partitions is not None else ", ".join(p.name for p in part))
                raise ParallelRebuildError(
                    f"rebuild of {what} failed; the views are unchanged: {value}")
        # each worker closed its store before saying done: no need to wait for its exit
        if by_partition:
            try:
                repeated = store.merge(paths, runner.projections)
            except IntegrityError as exc:
                log.warning("%s; rebuilding in one process instead", exc)
                overlapped = True
        else:
            store.adopt(paths, [part for part, _ in tasks])
    finally:
        for i, proc in enumerate(procs):
            if i in results:  # done: it is only exiting
                proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()
        out.close()
        shutil.rmtree(scratch, ignore_errors=True)
    if overlapped:
        return runner.rebuild(progress=None, until=until, batch_size=batch_size)
    total = sum(read) if by_partition else max(read)
    if progress and total > reported:
        progress(total - reported)
    counts = results.values()
    if by_partition:
        # an event about no one was applied once per share: count it applied once
        stats = RunStats(records=sum(r[0] for r in counts),
                         applied=sum(r[1] for r in counts) - repeated,
                         bad=sum(r[2] for r in counts),
                         duplicates=sum(r[3] for r in counts) + repeated)
    else:
        stats = RunStats(records=max(r[0] for r in counts), bad=max(r[2] for r in counts))
        for _, applied, _, duplicates in counts:
            stats.applied += applied
            stats.duplicates += duplicates
    return stats
