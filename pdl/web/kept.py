"""The dashboard's latest answers kept across restarts, so the first overview after a
server starts shows the last one judged, labelled as not current, instead of judging the
clock rules while it waits (seconds on a large log).

One JSON file per answer in the data directory (0600, replaced atomically), naming what
it was judged on: the log id and the view store (the SQLite file, or the PostgreSQL
database and schema; never a password). Read back only for the same log and view store;
``pdl.web.summary`` then shows it only as an earlier answer (never as current) and only
if the views have read at least as far, while a fresh one is judged aside. A missing,
unreadable or foreign file is no answer: the page judges as it would without it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from ledger.files import write_private

LOG = logging.getLogger("pdl.web")
#: Bumped when what is kept changes meaning: an older file is then ignored.
FORMAT = 1


def views_identity(views: Any) -> str:
    """Which view store: the SQLite file's resolved path, or PostgreSQL's host, port,
    database and schema (no password)."""
    path = getattr(views, "path", None)
    if isinstance(path, str):
        return f"sqlite {Path(path).resolve()}"
    return f"{getattr(views, 'where', type(views).__name__)} schema {getattr(views, 'schema', '')}"


class KeptAnswer:
    """The latest answer of one dashboard cache, in the file ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._saved: tuple[Any, ...] | None = None

    def load(self, of: dict[str, Any]) -> dict[str, Any] | None:
        """The answer kept for ``of`` (the log id and view store), or None."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("of") != {**of, "format": FORMAT}:
            return None
        answer = data.get("answer")
        return answer if isinstance(answer, dict) else None

    def save(self, of: dict[str, Any], answer: dict[str, Any], order: tuple[Any, ...],
             every_s: float = 0) -> None:
        """Keep ``answer`` unless one later in ``order`` (minute, records) was kept by
        this process, or the file was written less than ``every_s`` seconds ago; a
        failure is logged, never raised (the page does not need it)."""
        with self._lock:
            if self._saved is not None and order < self._saved:
                return
            if every_s > 0:
                try:
                    if time.time() - self.path.stat().st_mtime < every_s:
                        return
                except OSError:
                    pass  # none yet
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            try:
                write_private(temporary, json.dumps({"of": {**of, "format": FORMAT},
                                                     "answer": answer}))
                os.replace(temporary, self.path)
            except OSError as exc:
                LOG.warning("keeping the dashboard's last answer in %s failed: %s",
                            self.path, type(exc).__name__)
                return
            self._saved = order
