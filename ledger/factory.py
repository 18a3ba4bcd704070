"""The factories that open the log and the key vault named by the settings: the one
module above their backends.

``ledger.persistence`` is the log's interface; ``ledger.sqlite`` and ``ledger.kafka``
implement it and import only it; ``create_log`` picks one from ``LEDGER_BACKEND``.
``ledger.sealing.KeyVault`` is the vault's; ``open_vault`` picks the SQLite file or
PostgreSQL (``LEDGER_VAULT_URL``, ``ledger.vault_postgres``).
"""

from __future__ import annotations

from ledger.persistence import EventLog
from ledger.sealing import KeyVault, SQLiteKeyVault
from ledger.settings import Settings


def create_log(settings: Settings) -> EventLog:
    """The log of the backend named by ``LEDGER_BACKEND`` (``settings.backend``)."""
    if settings.backend == "kafka":
        # kafka-python loads only when Kafka is the backend
        from ledger.kafka import KafkaEventLog

        return KafkaEventLog.from_settings(settings)
    from ledger.sqlite import SQLiteEventLog

    return SQLiteEventLog(settings.log_path, synchronous=settings.sqlite_synchronous)


def open_vault(settings: Settings, master_key: bytes) -> KeyVault:
    """The key vault: PostgreSQL if ``LEDGER_VAULT_URL`` names one, else the SQLite file
    (``LEDGER_VAULT_PATH``, default ``DATA_DIR/vault.db``)."""
    if settings.vault_url:
        # psycopg loads only when PostgreSQL holds the vault
        from ledger.vault_postgres import PostgresKeyVault

        return PostgresKeyVault(settings.vault_url, master_key)
    return SQLiteKeyVault(settings.vault_file, master_key)
