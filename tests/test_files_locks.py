"""A second SQLite connection opened in a process that has one must not drop the first
one's locks (``ledger.files.private_file``).

POSIX advisory locks belong to the process and closing ANY descriptor of the file drops
them all. ``private_file`` used to open and close the database file before every SQLite
connection: the dashboard opening its side connection to the views (the activity chart
redrawn aside) released the server connection's shared lock, a judging process closing
its own connection then found itself alone, checkpointed and deleted the WAL under the
server: the server's later commits went into a deleted file (lost) and the next
connection failed with "disk I/O error" (the ``PersistenceError`` seen in ``bench/web.py``).
Real files, real processes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from consumers.views import SQLiteViewStore
from ledger.files import private_file


def _in_another_process(path: Path, sql: str) -> list[list[object]]:
    """Open the views in a process of its own, run ``sql``, close (as ``pdl.web.judging``
    does)."""
    code = ("import json, sys\nfrom consumers.views import SQLiteViewStore\n"
            "s = SQLiteViewStore(sys.argv[1])\n"
            "print(json.dumps(s.query(sys.argv[2])))\ns.close()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", code, str(path), sql], env=env,
                          capture_output=True, text=True, check=True)
    import json
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_a_second_connection_in_the_process_keeps_the_first_ones_wal(tmp_path: Path) -> None:
    path = tmp_path / "views.db"
    server = SQLiteViewStore(path)
    try:
        with server.transaction() as tx:
            tx.execute("CREATE TABLE t (a INTEGER)")
            tx.execute("INSERT INTO t VALUES (1)")
        # a side connection in the same process, opened and closed (the chart aside)
        SQLiteViewStore(path, cache_mb=server.cache_mb).close()
        # a judging process reads and closes: it is not the last connection
        assert _in_another_process(path, "SELECT a FROM t") == [[1]]
        assert Path(f"{path}-wal").exists()
        with server.transaction() as tx:
            tx.execute("INSERT INTO t VALUES (2)")
        side = SQLiteViewStore(path)  # "disk I/O error" when the WAL was deleted
        try:
            assert side.query("SELECT a FROM t ORDER BY a") == [(1,), (2,)]
        finally:
            side.close()
    finally:
        server.close()
    # the server's last commit is in the file, not in a deleted WAL
    assert _in_another_process(path, "SELECT a FROM t ORDER BY a") == [[1], [2]]


def test_private_file_still_creates_and_tightens(tmp_path: Path) -> None:
    made = private_file(tmp_path / "new" / "x.db")
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    assert stat.S_IMODE(made.parent.stat().st_mode) == 0o700
    loose = tmp_path / "loose.db"
    loose.write_bytes(b"kept")
    loose.chmod(0o644)
    assert private_file(loose) == loose
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600 and loose.read_bytes() == b"kept"
