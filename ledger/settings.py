"""Settings, read once from ``LEDGER_*`` environment variables by ``Settings.from_env``.

Every error names the variable, the value's problem and what to do.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ledger.errors import ConfigurationError

PREFIX = "LEDGER_"
BACKENDS = ("sqlite", "kafka")
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def decode_key(raw: str, name: str = "LEDGER_MASTER_KEY") -> bytes:
    """A 32-byte key from base64 (standard or url-safe) or 64 hex digits."""
    raw = raw.strip()
    key: bytes | None = None
    if len(raw) == 64:
        try:
            key = bytes.fromhex(raw)
        except ValueError:
            key = None
    if key is None:
        try:
            key = base64.urlsafe_b64decode(raw.replace("+", "-").replace("/", "_") + "==")
        except (binascii.Error, ValueError):
            key = None
    if key is None or len(key) != 32:
        raise ConfigurationError(
            f"{name} must be 32 random bytes in base64 or hex (generate one with `pdl keygen`)"
        )
    return key


def generate_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


@dataclass(frozen=True)
class Settings:
    """Every setting of the ledger. ``from_env`` is the only place that reads the environment."""

    data_dir: Path = Path(".pdl-data")
    backend: str = "sqlite"
    master_key: bytes | None = None
    demo: bool = False
    actor: str = "unknown"
    sqlite_path: Path | None = None
    vault_path: Path | None = None
    views_path: Path | None = None
    sqlite_synchronous: str = "FULL"
    request_deadline_days: int = 15
    #: SQLite page cache of the view store, in MB (``LEDGER_VIEW_CACHE_MB``): a fixed part
    #: of a projection process's memory, whatever the number of people.
    view_cache_mb: int = 32
    #: Records per transaction of ``pdl rebuild`` (``LEDGER_REBUILD_BATCH``): the decoded
    #: batch is most of a rebuild's memory above the page cache. 20,000 is ~25 % faster
    #: than 5,000; 5,000 keeps a rebuild near 165 MB instead of ~250 MB (bench/replay.py).
    rebuild_batch: int = 20_000
    #: What each projection keeps in memory between batches (``LEDGER_VIEW_CACHE_ENTRIES``,
    #: see ``consumers.rows.WriteCache``): more is faster while it covers the people being
    #: written, and costs a fixed ~0.5 KB per entry.
    view_cache_entries: int = 150_000
    #: Whether the HTTP API keeps the breach-scope holdings in memory
    #: (``LEDGER_SCOPE_INDEX``; ``consumers.scope_index``): milliseconds per scope answer
    #: instead of tens to hundreds, for ~30 bytes per segment (~130 MB at 10M events).
    scope_index: bool = True
    kafka: dict[str, Any] = field(default_factory=dict)
    #: Verifiable log (docs/verification.md): the checkpoint signing key, kept outside the
    #: log (``LEDGER_SIGNING_KEY`` or ``LEDGER_SIGNING_KEY_FILE``), the key verifiers pin
    #: (``LEDGER_VERIFIER_KEY``), how often a checkpoint is signed, where checkpoint files
    #: go, the log's origin line, the verifier's trust state and the Kafka trees' file.
    signing_key: str | None = None
    signing_key_file: Path | None = None
    verifier_key: str | None = None
    checkpoint_records: int = 10_000
    checkpoint_seconds: int = 10
    checkpoint_dir: Path | None = None
    log_origin: str | None = None
    trust_path: Path | None = None
    tree_path: Path | None = None

    @property
    def log_path(self) -> Path:
        return self.sqlite_path or self.data_dir / "log.db"

    @property
    def vault_file(self) -> Path:
        return self.vault_path or self.data_dir / "vault.db"

    @property
    def views_file(self) -> Path:
        return self.views_path or self.data_dir / "views.db"

    @property
    def checkpoint_folder(self) -> Path:
        return self.checkpoint_dir or self.data_dir / "checkpoints"

    @property
    def trust_file(self) -> Path:
        return self.trust_path or self.data_dir / "verify-trust.json"

    @property
    def tree_file(self) -> Path:
        """The Kafka log's trees (the SQLite log keeps its tree in ``log.db``)."""
        return self.tree_path or self.data_dir / "kafka-trees.db"

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def require_master_key(self) -> bytes:
        """The master key; in demo mode one is generated once and kept in the data dir."""
        if self.master_key is not None:
            return self.master_key
        if self.demo:
            path = self.data_dir / "demo-master.key"
            if not path.exists():
                self.data_dir.mkdir(parents=True, exist_ok=True)
                path.write_text(generate_key())
                path.chmod(0o600)
            return decode_key(path.read_text(), f"demo key file {path}")
        raise ConfigurationError(
            "LEDGER_MASTER_KEY is not set: the ledger needs it to seal personal values. "
            "Generate one with `pdl keygen` and keep it in your secret store, "
            "or set LEDGER_DEMO=1 to use a throw-away key in the data directory."
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(key: str, default: str | None = None) -> str | None:
            value = env.get(PREFIX + key)
            return default if value is None or value == "" else value

        def integer(key: str, default: int, minimum: int = 0) -> int:
            raw = get(key)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ConfigurationError(f"{PREFIX}{key}={raw!r} is not a whole number") from None
            if value < minimum:
                raise ConfigurationError(f"{PREFIX}{key}={value} must be at least {minimum}")
            return value

        def flag(key: str, default: bool = False) -> bool:
            raw = (get(key) or ("1" if default else "0")).lower()
            if raw not in ("0", "1", "true", "false", "yes", "no"):
                raise ConfigurationError(f"{PREFIX}{key}={raw!r} must be 1 or 0")
            return raw in ("1", "true", "yes")

        backend = (get("BACKEND") or "sqlite").lower()
        if backend not in BACKENDS:
            raise ConfigurationError(
                f"{PREFIX}BACKEND={backend!r} is not one of {', '.join(BACKENDS)}"
            )
        sync = (get("SQLITE_SYNCHRONOUS") or "FULL").upper()
        if sync not in SYNCHRONOUS:
            raise ConfigurationError(
                f"{PREFIX}SQLITE_SYNCHRONOUS={sync!r} is not one of {', '.join(SYNCHRONOUS)}"
            )
        raw_key = get("MASTER_KEY")
        master_key = decode_key(raw_key, PREFIX + "MASTER_KEY") if raw_key else None
        bootstrap = get("KAFKA_BOOTSTRAP_SERVERS")
        if backend == "kafka" and not bootstrap:
            raise ConfigurationError(
                f"{PREFIX}BACKEND=kafka needs {PREFIX}KAFKA_BOOTSTRAP_SERVERS "
                "(for example 127.0.0.1:19092; `scripts/kafka-dev start` runs a local broker)"
            )
        kafka: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "topic": get("KAFKA_TOPIC", "pdl.events"),
            "dead_letter_topic": get("KAFKA_DEAD_LETTER_TOPIC", "pdl.events.dead-letter"),
            "group_id": get("KAFKA_GROUP_ID", "pdl-projections"),
            "partitions": integer("KAFKA_PARTITIONS", 6, 1),
            "replication_factor": integer("KAFKA_REPLICATION_FACTOR", 1, 1),
            "min_insync_replicas": integer("KAFKA_MIN_INSYNC_REPLICAS", 1, 1),
            "security_protocol": get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
            "sasl_mechanism": get("KAFKA_SASL_MECHANISM"),
            "sasl_plain_username": get("KAFKA_SASL_USERNAME"),
            "sasl_plain_password": get("KAFKA_SASL_PASSWORD"),
            "ssl_cafile": get("KAFKA_SSL_CAFILE"),
            "request_timeout_ms": integer("KAFKA_REQUEST_TIMEOUT_MS", 30000, 1000),
        }
        path = get("SQLITE_PATH")
        vault = get("VAULT_PATH")
        views = get("VIEWS_PATH")
        key_file, checkpoint_dir = get("SIGNING_KEY_FILE"), get("CHECKPOINT_DIR")
        trust, tree = get("TRUST_FILE"), get("TREE_PATH")
        return cls(
            data_dir=Path(get("DATA_DIR", ".pdl-data") or ".pdl-data"),
            backend=backend,
            master_key=master_key,
            demo=flag("DEMO"),
            actor=get("ACTOR") or env.get("USER") or "unknown",
            sqlite_path=Path(path) if path else None,
            vault_path=Path(vault) if vault else None,
            views_path=Path(views) if views else None,
            sqlite_synchronous=sync,
            request_deadline_days=integer("REQUEST_DEADLINE_DAYS", 15, 1),
            view_cache_mb=integer("VIEW_CACHE_MB", 32, 1),
            rebuild_batch=integer("REBUILD_BATCH", 20_000, 1),
            view_cache_entries=integer("VIEW_CACHE_ENTRIES", 150_000, 1),
            scope_index=flag("SCOPE_INDEX", default=True),
            kafka=kafka,
            signing_key=get("SIGNING_KEY"),
            signing_key_file=Path(key_file) if key_file else None,
            verifier_key=get("VERIFIER_KEY"),
            checkpoint_records=integer("CHECKPOINT_RECORDS", 10_000, 1),
            checkpoint_seconds=integer("CHECKPOINT_SECONDS", 10, 0),
            checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
            log_origin=get("LOG_ORIGIN"),
            trust_path=Path(trust) if trust else None,
            tree_path=Path(tree) if tree else None,
        )
