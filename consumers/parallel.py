"""Rebuilding views aside, in this process or in several, then swapping them in with one
transaction: a rebuild that fails or is killed, for any reason and in any mode, leaves the
previous views and positions exactly as they were.

``parallel_rebuild`` builds every view of a runner in scratch stores beside the real one
(``ViewStore.scratch``), and only when the build succeeded swaps them in with ONE
transaction of the real store (``ViewStore.adopt`` or ``ViewStore.merge``): readers see the
old views until that commit and the new ones after it. With one worker (``--workers 1``)
the build runs in this process; with more, a rebuild is CPU-bound Python (decoding, then
each projection's rules), so it is split one of two ways:

- **by partition** (Kafka: ``EventLog.self_contained_partitions``): each worker rebuilds
  every projection from its own share of the topic's partitions. Every person's events sit
  in one partition and every event about no one is copied to every partition, so each
  share is a whole history for its people, and no record is read twice (except those
  copies). The views are merged at the end (``SQLiteViewStore.merge``,
  ``PostgresViewStore.merge``, ``Projection.merge``): people's rows are disjoint, rows
  about no one are kept once.
- **by projection** (the SQLite log, one partition): the projections in groups of about
  equal cost (``Projection.cost``), each group rebuilt by a process of its own reading the
  whole log; the groups' tables are copied in (``SQLiteViewStore.adopt``,
  ``PostgresViewStore.adopt``).

Records that cannot be applied are quarantined in the scratch store like anywhere else and
copied in with the views. Worker processes die with their parent (``PR_SET_PDEATHSIG`` on
Linux, and a watchdog on the parent's pid everywhere), so a killed rebuild leaves nothing
running. A store that cannot build aside (an in-memory replay, which nobody reads while it
fills) is rebuilt in place by ``ProjectionRunner.rebuild``. Worker processes need a log
that can be opened again in another process (``EventLog.reopener``: the SQLite log by its
file, Kafka by its topic; each worker reads to the end the log has when it starts).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import pickle
import queue as queue_module
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from consumers.projection import Projection, ProjectionRunner, RunStats
from consumers.views import RebuildOvertaken, ViewStore
from ledger.errors import IntegrityError, LedgerError
from ledger.persistence import EventLog

log = logging.getLogger(__name__)

#: Builds before a rebuild overtaken by the live consumer gives up (``RebuildOvertaken``):
#: each one reads to the log's end anew, past what overtook the one before.
REBUILD_ATTEMPTS = 3

#: prctl(2) option: the signal a process gets when its parent dies (Linux).
PR_SET_PDEATHSIG = 1
#: Seconds between a worker's checks that its parent is still alive (the fallback).
WATCHDOG_INTERVAL = 1.0


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
    """Whether other processes can rebuild this runner's views: a store that builds aside
    and a log they can open again."""
    return runner.store.builds_aside and runner.log.reopener() is not None


def can_rebuild_in_parallel(runner: ProjectionRunner, workers: int = 2) -> bool:
    """Whether ``parallel_rebuild`` would use worker processes for this runner."""
    return _workers_can_build(runner) and len(_tasks(runner, workers)[0]) > 1


def die_with_parent(parent: int) -> None:
    """Make this process end when ``parent`` does: the kernel's parent-death signal on
    Linux, and a thread that watches the parent's pid (anywhere, and for the race where
    the parent died before the signal was armed)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no libc prctl: the watchdog alone
            pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            threading.Event().wait(WATCHDOG_INTERVAL)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _worker(index: int, parent: int, open_log: Callable[[], EventLog],
            open_store: Callable[[str], ViewStore], projections: list[Projection],
            partitions: list[int] | None, place: str, batch_size: int,
            dedupe: bool, until: datetime | None, out: Any) -> None:
    die_with_parent(parent)
    try:
        stats = _build(open_log(), open_store(place), projections, partitions, batch_size,
                       dedupe, until, lambda n: out.put(("progress", index, n)),
                       close_log=True)
        out.put(("done", index, (stats.records, stats.applied, stats.bad, stats.duplicates)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        out.put(("error", index, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def _build(log: EventLog, store: ViewStore, projections: list[Projection],
           partitions: list[int] | None, batch_size: int, dedupe: bool,
           until: datetime | None, progress: Callable[[int], None] | None,
           *, close_log: bool) -> RunStats:
    """Rebuild ``projections`` into the scratch ``store`` (closed after)."""
    try:
        runner = ProjectionRunner(log, store, projections, batch_size=batch_size, dedupe=dedupe)
        return runner.rebuild(progress=progress, until=until, partitions=partitions,
                              indexes=partitions is None)
    finally:
        store.close()
        if close_log:
            log.close()


def parallel_rebuild(
    runner: ProjectionRunner,
    *,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    until: datetime | None = None,
    batch_size: int | None = None,
) -> RunStats:
    """Rebuild ``runner``'s projections aside and swap them in on success (see the module
    docstring): in this process with ``workers`` 1 (or where workers cannot be used), in
    up to ``workers`` processes otherwise.

    ``progress`` gets the records read: split by partition, all workers' together; split
    by projection, the slowest worker's (each reads the whole log).
    Raises ``ParallelRebuildError`` if a worker fails, and whatever the build raised in
    this process; either way the views and positions are left as they were. If the shares
    of a split by partition overlap (a person's events in two partitions), it says so in
    the log and rebuilds in this process instead.
    """
    for attempt in range(1, REBUILD_ATTEMPTS + 1):
        try:
            return _rebuild_aside(runner, workers, progress, until, batch_size)
        except RebuildOvertaken as exc:
            if attempt == REBUILD_ATTEMPTS:
                raise RebuildOvertaken(
                    f"{exc} ({REBUILD_ATTEMPTS} attempts): stop `pdl consume` while one "
                    "projection is rebuilt") from exc
            log.warning("%s; building again (attempt %d of %d)", exc, attempt + 1,
                        REBUILD_ATTEMPTS)
    raise AssertionError("unreachable")


def _rebuild_aside(runner: ProjectionRunner, workers: int,
                   progress: Callable[[int], None] | None, until: datetime | None,
                   batch_size: int | None) -> RunStats:
    """One attempt of ``parallel_rebuild``."""
    store = runner.store
    batch = batch_size or runner.batch_size
    if workers > 1 and _workers_can_build(runner):
        tasks, by_partition = _tasks(runner, workers)
        if len(tasks) > 1:
            stats = _in_workers(runner, tasks, by_partition, progress, until, batch)
            if stats is not None:
                return stats
            progress = None  # the shares overlapped: once more, here
    places = store.scratch(1)
    if places is None:
        return runner.rebuild(progress=progress, until=until, batch_size=batch_size)
    try:
        # copies, as a worker process gets: the runner's own objects keep their caches
        projections: list[Projection] = pickle.loads(pickle.dumps(runner.projections))
        stats = _build(runner.log, store.scratch_opener()(places[0]), projections, None,
                       batch, runner.dedupe, until, progress, close_log=False)
        store.adopt(places, [runner.projections])
    finally:
        store.drop_scratch()
    return stats


def _in_workers(runner: ProjectionRunner,
                tasks: list[tuple[list[Projection], list[int] | None]], by_partition: bool,
                progress: Callable[[int], None] | None, until: datetime | None,
                batch_size: int) -> RunStats | None:
    """The rebuild in worker processes; None if the shares overlapped (nothing changed)."""
    store = runner.store
    open_log = runner.log.reopener()
    assert open_log is not None
    places = store.scratch(len(tasks))
    assert places is not None
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    open_store = store.scratch_opener()
    procs = [
        context.Process(
            target=_worker, name=f"pdl-rebuild-{i}", daemon=True,
            args=(i, os.getpid(), open_log, open_store, part, partitions, places[i],
                  batch_size, runner.dedupe, until, out))
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
                repeated = store.merge(places, runner.projections)
            except IntegrityError as exc:
                log.warning("%s; rebuilding in one process instead", exc)
                overlapped = True
        else:
            store.adopt(places, [part for part, _ in tasks])
    finally:
        for i, proc in enumerate(procs):
            if i in results:  # done: it is only exiting
                proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()
        out.close()
        store.drop_scratch()
    if overlapped:
        return None
    total = sum(read) if by_partition else max(read)
    if progress and total > reported:
        progress(total - reported)
    counts = results.values()
    if by_partition:
        # an event about no one was applied once per share: count it applied once
        return RunStats(records=sum(r[0] for r in counts),
                        applied=sum(r[1] for r in counts) - repeated,
                        bad=sum(r[2] for r in counts),
                        duplicates=sum(r[3] for r in counts) + repeated)
    stats = RunStats(records=max(r[0] for r in counts), bad=max(r[2] for r in counts))
    for _, applied, _, duplicates in counts:
        stats.applied += applied
        stats.duplicates += duplicates
    return stats
