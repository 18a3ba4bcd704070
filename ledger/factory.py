"""The factory that opens the log named by the settings: the one module above both backends.

``ledger.persistence`` is the interface; ``ledger.sqlite`` and ``ledger.kafka`` implement it
and import only it; this module picks one from ``LEDGER_BACKEND``.
"""

from __future__ import annotations

from ledger.persistence import EventLog
from ledger.settings import Settings


def create_log(settings: Settings) -> EventLog:
    """The log of the backend named by ``LEDGER_BACKEND`` (``settings.backend``)."""
    if settings.backend == "kafka":
        # kafka-python loads only when Kafka is the backend
        from ledger.kafka import KafkaEventLog

        return KafkaEventLog.from_settings(settings)
    from ledger.sqlite import SQLiteEventLog

    return SQLiteEventLog(settings.log_path, synchronous=settings.sqlite_synchronous)
