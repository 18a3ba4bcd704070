"""The findings judged in a process of its own (``python -m pdl.web.judging``), for the
dashboard's background judgements (``pdl.web.summary``).

The timed rules are Python: judged in a thread of the server they would hold its
interpreter lock for seconds at 1M events, and every request meanwhile would wait on it.
One short-lived process per judgement reads its arguments (what opens the views: their
SQLite file, or their PostgreSQL database and schema; the log id, the minute, the clock
thresholds, the settings, where to keep the answer for the next server) pickled from
stdin, judges on a read snapshot of its own connection, keeps the answer (JSON,
``pdl.web.kept``) and writes it pickled to stdout. Only the server writes to that pipe
and reads from it.
"""

from __future__ import annotations

import pickle
import sys

from pdl.web.kept import KeptAnswer
from pdl.web.summary import judge


def main() -> int:
    opener, log_id, minute, clocks, settings, keep = pickle.load(sys.stdin.buffer)
    store = opener()
    try:
        with store.snapshot() as views:
            entry = judge(views, log_id, minute, clocks, settings)
    finally:
        store.close()
    if keep is not None:  # for the next server (pdl.web.kept)
        path, of, every_s = keep
        KeptAnswer(path).save(of, entry.to_json(), entry.order(), every_s)
    sys.stdout.buffer.write(pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
