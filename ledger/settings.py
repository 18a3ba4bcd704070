"""Settings, read once from ``LEDGER_*`` environment variables by ``Settings.from_env``.

Each setting has one source: its default is the dataclass field's, and ``ENV`` /
``KAFKA_ENV`` say which variable sets it, how the text is parsed and its bounds. Modules
that need a default import it from here (``Settings.view_cache_entries``). Every error
names the variable, the value's problem and what to do.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ledger.errors import ConfigurationError
from ledger.files import private_dir, write_private

PREFIX = "LEDGER_"
BACKENDS = ("sqlite", "kafka")
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
OPERATOR_KINDS = ("cii", "state_organ", "other")


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


def postgres_url(raw: str | None, name: str) -> str | None:
    """A ``postgresql://`` URL (or None); the error names the variable, never the value
    (it may hold a password)."""
    if raw is None:
        return None
    if not raw.startswith(("postgresql://", "postgres://")):
        raise ConfigurationError(
            f"{name} must be a postgresql:// URL, for example "
            "postgresql://pdl@db.internal:5432/pdl (the password in ~/.pgpass or PGPASSWORD)")
    return raw


def generate_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def key_file(file: str, name: str) -> bytes:
    """The master key in the file ``name`` names (a Docker secret under /run/secrets)."""
    try:
        raw = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"{name}={file!r} cannot be read "
            f"({type(exc).__name__}: {getattr(exc, 'strerror', None) or 'not text'})"
        ) from None
    return decode_key(raw, f"{name} ({file})")


@dataclass(frozen=True)
class KafkaSettings:
    """How to reach the Kafka backend's topic (the ``LEDGER_KAFKA_*`` variables)."""

    bootstrap_servers: str | None = None
    topic: str = "pdl.events"
    #: None: records that do not decode are not set aside (the bench's all decode).
    dead_letter_topic: str | None = "pdl.events.dead-letter"
    group_id: str = "pdl-projections"
    partitions: int = 6
    replication_factor: int = 1
    min_insync_replicas: int = 1
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    request_timeout_ms: int = 30000
    #: How long a silent consumer-group member keeps its partitions: after a `pdl consume`
    #: process dies, the others take over its partitions within this time (kafka-python's
    #: default is 45 s; the broker accepts 6 s at least).
    session_timeout_ms: int = 10000
    #: Set by code, never by the environment: a fixed producer identity (tests, benches).
    transactional_id: str | None = None
    #: Set by code: whether opening the log creates missing topics. The CLI turns it off
    #: for commands that do not publish events of their own (``pdl.cli.settings_from``).
    prepare_topics: bool = True
    #: Set by code, never by the environment: False only for logs written by hand in tests
    #: of other properties, whose subjects are readable stand-ins for pseudonyms.
    check_subjects: bool = True

    #: Fields set by code only, never by a variable (so they have no row in ``KAFKA_ENV``).
    SET_BY_CODE: ClassVar[frozenset[str]] = frozenset(
        {"transactional_id", "check_subjects", "prepare_topics"})

    #: The settings passed to the kafka-python clients as they are.
    SECURITY_KEYS: ClassVar[tuple[str, ...]] = (
        "security_protocol", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password",
        "ssl_cafile",
    )

    def security(self) -> dict[str, str | None]:
        """The client security settings, by kafka-python's names."""
        return {key: getattr(self, key) for key in self.SECURITY_KEYS}

    def with_(self, **changes: Any) -> KafkaSettings:
        return replace(self, **changes)


@dataclass(frozen=True)
class Settings:
    """Every setting of the ledger. ``from_env`` is the only place that reads the environment."""

    data_dir: Path = Path(".pdl-data")
    backend: str = "sqlite"
    master_key: bytes | None = None
    #: Where the master key is read from instead (``LEDGER_MASTER_KEY_FILE``: a Docker
    #: secret such as /run/secrets/ledger-master-key); not with ``LEDGER_MASTER_KEY``.
    master_key_file: Path | None = None
    demo: bool = False
    actor: str = "unknown"
    sqlite_path: Path | None = None
    vault_path: Path | None = None
    views_path: Path | None = None
    #: A shared view store (``LEDGER_VIEWS_URL=postgresql://...``); None: the SQLite file.
    views_url: str | None = None
    #: A shared key vault (``LEDGER_VAULT_URL=postgresql://...``); None: the SQLite file.
    vault_url: str | None = None
    sqlite_synchronous: str = "FULL"
    request_deadline_days: int = 15
    #: The findings' own thresholds (not the policy's; see consumers.findings.thresholds):
    #: days after closure by which data beyond a legal hold is gone (2.1.1(1)d), days of
    #: grace after a retention deadline (6.3a), hours to report a breach (6.2.1a).
    closure_erasure_days: int = 15
    erasure_grace_days: int = 2
    incident_report_hours: int = 72
    #: hours to start the contingency plan and to stop an incident's spread (6.2.1a)
    incident_contingency_hours: int = 24
    incident_containment_hours: int = 72
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
    #: Whether a ``pdl consume`` member on Kafka reads in a process of its own while its
    #: main process applies (``LEDGER_CONSUME_PIPELINE``; ``consumers.pipeline``): on two
    #: or more cores about twice the records per second; ``0`` for one process.
    consume_pipeline: bool = True
    #: A first admin token for ``pdl serve`` to accept (``LEDGER_ADMIN_TOKEN_FILE``, a
    #: Docker secret made with ``pdl token new``); only its hash is stored.
    admin_token_file: Path | None = None
    #: The largest body ``POST /events`` reads (``LEDGER_INGEST_MAX_BYTES``); past it the
    #: request is refused with 413 and nothing is appended. 16 MiB: batches of 10,000
    #: typical events (~0.6 KB each) with room to spare.
    ingest_max_bytes: int = 16 * 1024 * 1024
    #: The most events one ``POST /events`` may carry (``LEDGER_INGEST_MAX_EVENTS``; 413
    #: past it). One request is validated whole before anything is appended.
    ingest_max_events: int = 10_000
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    #: Who the company is under the CAC incident measures (``LEDGER_OPERATOR_KIND``):
    #: ``cii`` (critical information infrastructure), ``state_organ`` or ``other``.
    operator_kind: str = "other"
    #: People affected from which an incident is graded 较大, 重大, 特别重大
    #: (``LEDGER_INCIDENT_GRADE_THRESHOLDS``); None: the rule table's (cases/deadlines.toml).
    grade_thresholds: tuple[int, int, int] | None = None

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
    def cases_file(self) -> Path:
        """The case files' own event store (the eventsourcing library's SQLite recorder)."""
        return self.data_dir / "cases.db"

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
                private_dir(self.data_dir)
                write_private(path, generate_key())
            return decode_key(path.read_text(), f"demo key file {path}")
        raise ConfigurationError(
            "LEDGER_MASTER_KEY is not set: the ledger needs it to seal personal values. "
            "Generate one with `pdl keygen` and keep it in your secret store, "
            "or set LEDGER_DEMO=1 to use a throw-away key in the data directory."
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings named by ``env`` (default ``os.environ``), by the ``ENV`` tables.

        Raises ``ConfigurationError`` naming the variable for any value out of bounds."""
        env = os.environ if env is None else env
        kafka = _read(KafkaSettings, KAFKA_ENV, env)
        settings = _read(cls, ENV, env, kafka=kafka)
        if settings.master_key_file is not None:
            if settings.master_key is not None:
                raise ConfigurationError(
                    f"set {PREFIX}MASTER_KEY or {PREFIX}MASTER_KEY_FILE, not both")
            settings = settings.with_(master_key=key_file(str(settings.master_key_file),
                                                          PREFIX + "MASTER_KEY_FILE"))
        if settings.backend == "kafka" and not kafka.bootstrap_servers:
            raise ConfigurationError(
                f"{PREFIX}BACKEND=kafka needs {PREFIX}KAFKA_BOOTSTRAP_SERVERS "
                "(for example 127.0.0.1:19092; `scripts/kafka-dev start` runs a local broker)"
            )
        return settings


# -- parsers: (text, variable name) -> value; each error names the variable -----------------

Parser = Callable[[str, str], Any]


def text(raw: str, name: str) -> str:
    return raw


def path(raw: str, name: str) -> Path:
    return Path(raw)


def flag(raw: str, name: str) -> bool:
    raw = raw.lower()
    if raw not in ("0", "1", "true", "false", "yes", "no"):
        raise ConfigurationError(f"{name}={raw!r} must be 1 or 0")
    return raw in ("1", "true", "yes")


def integer(minimum: int) -> Parser:
    """A whole number of at least ``minimum``."""

    def parse(raw: str, name: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigurationError(f"{name}={raw!r} is not a whole number") from None
        if value < minimum:
            raise ConfigurationError(f"{name}={value} must be at least {minimum}")
        return value

    parse.__doc__ = f"whole number >= {minimum}"
    return parse


def choice(options: tuple[str, ...], case: Callable[[str], str] = str.lower) -> Parser:
    """One of ``options``, compared after ``case`` (lower or upper)."""

    def parse(raw: str, name: str) -> str:
        value = case(raw)
        if value not in options:
            raise ConfigurationError(f"{name}={value!r} is not one of {', '.join(options)}")
        return value

    parse.__doc__ = " | ".join(options)
    return parse


def thresholds(raw: str, name: str) -> tuple[int, int, int]:
    """Three increasing whole numbers of people (较大, 重大, 特别重大)."""
    try:
        values = tuple(int(v.strip().replace("_", "")) for v in raw.split(","))
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r}: give three whole numbers, e.g. "
                                 "1000000,10000000,100000000") from None
    if len(values) != 3 or not 0 < values[0] < values[1] < values[2]:
        raise ConfigurationError(f"{name}={raw!r}: give three increasing numbers of people "
                                 "(较大, 重大, 特别重大), e.g. 1000000,10000000,100000000")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class Var:
    """One row of a settings table: ``LEDGER_<variable>`` sets ``field`` through ``parser``.

    ``fallback`` names a variable without the prefix read when this one is unset (``USER``
    for the actor). An unset or empty variable leaves the field's default."""

    field: str
    variable: str
    parser: Parser = text
    fallback: str | None = None

    @property
    def name(self) -> str:
        return PREFIX + self.variable


#: Every ``LEDGER_*`` variable of ``Settings`` (bounds are in the parsers).
ENV: tuple[Var, ...] = (
    Var("data_dir", "DATA_DIR", path),
    Var("backend", "BACKEND", choice(BACKENDS)),
    Var("master_key", "MASTER_KEY", decode_key),
    Var("master_key_file", "MASTER_KEY_FILE", path),
    Var("demo", "DEMO", flag),
    Var("actor", "ACTOR", text, fallback="USER"),
    Var("sqlite_path", "SQLITE_PATH", path),
    Var("vault_path", "VAULT_PATH", path),
    Var("views_path", "VIEWS_PATH", path),
    Var("views_url", "VIEWS_URL", postgres_url),
    Var("vault_url", "VAULT_URL", postgres_url),
    Var("sqlite_synchronous", "SQLITE_SYNCHRONOUS", choice(SYNCHRONOUS, str.upper)),
    Var("request_deadline_days", "REQUEST_DEADLINE_DAYS", integer(1)),
    Var("closure_erasure_days", "CLOSURE_ERASURE_DAYS", integer(1)),
    Var("erasure_grace_days", "ERASURE_GRACE_DAYS", integer(1)),
    Var("incident_report_hours", "INCIDENT_REPORT_HOURS", integer(1)),
    Var("incident_contingency_hours", "INCIDENT_CONTINGENCY_HOURS", integer(1)),
    Var("incident_containment_hours", "INCIDENT_CONTAINMENT_HOURS", integer(1)),
    Var("view_cache_mb", "VIEW_CACHE_MB", integer(1)),
    Var("rebuild_batch", "REBUILD_BATCH", integer(1)),
    Var("view_cache_entries", "VIEW_CACHE_ENTRIES", integer(1)),
    Var("scope_index", "SCOPE_INDEX", flag),
    Var("consume_pipeline", "CONSUME_PIPELINE", flag),
    Var("admin_token_file", "ADMIN_TOKEN_FILE", path),
    Var("ingest_max_bytes", "INGEST_MAX_BYTES", integer(1024)),
    Var("ingest_max_events", "INGEST_MAX_EVENTS", integer(1)),
    Var("operator_kind", "OPERATOR_KIND", choice(OPERATOR_KINDS)),
    Var("grade_thresholds", "INCIDENT_GRADE_THRESHOLDS", thresholds),
    Var("signing_key", "SIGNING_KEY"),
    Var("signing_key_file", "SIGNING_KEY_FILE", path),
    Var("verifier_key", "VERIFIER_KEY"),
    Var("checkpoint_records", "CHECKPOINT_RECORDS", integer(1)),
    Var("checkpoint_seconds", "CHECKPOINT_SECONDS", integer(1)),
    Var("checkpoint_dir", "CHECKPOINT_DIR", path),
    Var("log_origin", "LOG_ORIGIN"),
    Var("trust_path", "TRUST_FILE", path),
    Var("tree_path", "TREE_PATH", path),
)

#: Every ``LEDGER_KAFKA_*`` variable of ``KafkaSettings``.
KAFKA_ENV: tuple[Var, ...] = (
    Var("bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS"),
    Var("topic", "KAFKA_TOPIC"),
    Var("dead_letter_topic", "KAFKA_DEAD_LETTER_TOPIC"),
    Var("group_id", "KAFKA_GROUP_ID"),
    Var("partitions", "KAFKA_PARTITIONS", integer(1)),
    Var("replication_factor", "KAFKA_REPLICATION_FACTOR", integer(1)),
    Var("min_insync_replicas", "KAFKA_MIN_INSYNC_REPLICAS", integer(1)),
    Var("security_protocol", "KAFKA_SECURITY_PROTOCOL"),
    Var("sasl_mechanism", "KAFKA_SASL_MECHANISM"),
    Var("sasl_plain_username", "KAFKA_SASL_USERNAME"),
    Var("sasl_plain_password", "KAFKA_SASL_PASSWORD"),
    Var("ssl_cafile", "KAFKA_SSL_CAFILE"),
    Var("request_timeout_ms", "KAFKA_REQUEST_TIMEOUT_MS", integer(1000)),
    Var("session_timeout_ms", "KAFKA_SESSION_TIMEOUT_MS", integer(6000)),
)

T = TypeVar("T")


def _read(cls: type[T], table: tuple[Var, ...], env: Mapping[str, str], **given: Any) -> T:
    """An instance of ``cls`` with each table row read from ``env``; unset rows keep the
    dataclass default."""
    values: dict[str, Any] = dict(given)
    for var in table:
        raw = env.get(var.name) or (env.get(var.fallback) if var.fallback else None)
        if raw:
            values[var.field] = var.parser(raw, var.name)
    return cls(**values)

