"""``pdl consume``: projections as a long-lived process (a Kafka consumer-group member)."""

from __future__ import annotations

import argparse
import signal
import threading

from typing import Any

from consumers.consume import CONSUME_BATCH, make_consumer
from consumers.projection import RunStats
from consumers.registry import open_views, select
from pdl.context import Add, open_ledger
from pdl.output import emit, err_console



def cmd_consume(args: argparse.Namespace) -> int:
    names = None if args.all or not args.names else args.names
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        err_console.print(f"{signal.Signals(signum).name}: finishing the current batch, then stopping")
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    with open_ledger(args) as ledger:
        store = open_views(ledger.settings)
        try:
            pipeline = (ledger.settings.consume_pipeline if args.pipeline is None
                        else args.pipeline)
            consumer = make_consumer(ledger.log, store, select(names), group_id=args.group,
                                     batch_size=args.batch_size, pipeline=pipeline)
            seen = [0]

            def on_batch(stats: RunStats) -> None:
                seen[0] += stats.records
                if not args.json:
                    err_console.print(f"projected {stats.records} record(s), {seen[0]} so far; "
                                      f"{stats.bad} sent to the dead-letter topic",
                                      highlight=False)

            total = consumer.run(stop, idle_exit=args.idle_exit, on_batch=on_batch)
        finally:
            store.close()
    emit(args, {"records": total.records, "applied": total.applied, "bad": total.bad,
                "duplicates": total.duplicates},
         lambda: err_console.print(f"stopped after {total.records} record(s)"))
    return 0


def register(sub: argparse._SubParsersAction, add: Add) -> None:  # type: ignore[type-arg]
    p = add("consume", cmd_consume,
            "run projections as a long-lived process (Kafka: one consumer-group member)")
    p.set_defaults(prepares_log=True)  # its dead-letter topic
    p.add_argument("names", nargs="*", help="projections to run (default: all)")
    p.add_argument("--all", action="store_true", help="run every projection")
    p.add_argument("--group", help="consumer group (LEDGER_KAFKA_GROUP_ID)")
    p.add_argument("--batch-size", type=int, default=CONSUME_BATCH, metavar="N",
                   help=f"records per view transaction at most (default {CONSUME_BATCH})")
    p.add_argument("--pipeline", action=argparse.BooleanOptionalAction, default=None,
                   help="Kafka: read in a process of its own while this one applies "
                        "(default LEDGER_CONSUME_PIPELINE, on)")
    p.add_argument("--idle-exit", type=float, metavar="SECONDS",
                   help="exit after this many seconds without new records")
