"""``FindingsProjection``: folds each event into the state, then runs the event's rules.

Per event type one handler is compiled from the registry (its fold, then its rules in
registration order), so applying an event costs one dictionary lookup, the rules' guards
tested inline, and the calls of the rules whose guard holds.
"""

from __future__ import annotations

import ast
import builtins
import sys
from collections.abc import Callable, Sequence
from typing import Final

from consumers.findings import rules as _rules  # noqa: F401 - registers every rule
from consumers.findings.folds import FOLDS, Fold
from consumers.findings.registry import RULES, Rule
from consumers.findings.store import (
    FINDINGS_TABLE,
    INCIDENTS_TABLE,
    POLICIES_TABLE,
    SCHEMA,
    SUBJECTS_TABLE,
    TABLES,
    Batch,
    RegistryCache,
)
from consumers.projection import Item, Projection
from consumers.rows import DEFAULT_CACHE_ENTRIES, WriteCache, create_meta, drop_meta
from consumers.views import ViewTransaction
from ledger.errors import ConfigurationError

Handler = Callable[[Batch, Item], None]


#: The names a guard may read besides its module's: what the handler holds.
_LOCALS: Final = frozenset({"batch", "item", "data", "person"})


def _guard(rule: Rule, n: int, scope: dict[str, object]) -> tuple[str, bool]:
    """Rule ``n``'s guard as source for the handler (its module's names renamed apart from
    other rules' and put in ``scope``), and whether it reads ``person``."""
    assert rule.when is not None and rule.check is not None
    tree = ast.parse(rule.when, mode="eval")
    module = vars(sys.modules[rule.module]) if rule.module else rule.check.__globals__
    person = False
    for node in ast.walk(tree):
        if not isinstance(node, ast.Name):
            continue
        if node.id in _LOCALS:
            person = person or node.id == "person"
            continue
        if node.id in module:
            value = module[node.id]
        elif hasattr(builtins, node.id):
            value = getattr(builtins, node.id)
        else:
            raise ConfigurationError(f"the guard of rule {rule.name} ({rule.clause}) reads "
                                     f"{node.id!r}, which its module does not define")
        node.id = f"r{n}_{node.id}"
        scope[node.id] = value
    return ast.unparse(tree), person


def _compile(event_type: str, fold: Fold | None, rules: Sequence[Rule], *,
             check_guards: bool = False) -> Handler:
    """One function running the fold then each rule in turn, written out rather than
    looped: the findings projection is the slowest, and a loop over a dozen rules per
    event costs as much as some of the rules. A rule's guard (``Rule.when``) is tested
    inline, and the rule called only if it holds; with ``check_guards`` (tests) every rule
    is called and a guard that was false where its rule found something raises."""
    scope: dict[str, object] = {"fold": fold}
    body = []
    uses_person = False
    for i, r in enumerate(rules):
        scope[f"check{i}"] = r.check
        call = [f"why = check{i}(batch, item, data)",
                "if why is not None:",
                f"    batch.flag({r.clause!r}, item, why)"]
        if r.when is None:
            body += call
            continue
        guard, person = _guard(r, i, scope)
        uses_person = uses_person or person
        if check_guards:
            body += [call[0], f"if why is not None and not ({guard}):",
                     f"    raise AssertionError('the guard of rule {r.name} was false, but it"
                     " found: ' + why)", *call[1:]]
        else:
            body += [f"if {guard}:", *(f"    {line}" for line in call)]
    lines = ["def handle(batch, item):", "    data = item.event.data"]
    if fold is not None:
        lines.append("    fold(batch, item, data)")
    if uses_person:  # the person the fold (if any) looked up: one lookup for every guard
        lines.append("    person = batch.person(item)")
    lines += [f"    {line}" for line in body]
    exec(compile("\n".join(lines), f"<findings handler of {event_type}>", "exec"), scope)  # noqa: S102 - our own source, built from the registry
    handle: Handler = scope["handle"]  # type: ignore[assignment]
    return handle


def handlers(rules: Sequence[Rule], *, check_guards: bool = False) -> dict[str, Handler]:
    """Event type -> what applying an event of that type does."""
    folds = {model.TYPE: fold for model, fold in FOLDS.items()}
    checks: dict[str, list[Rule]] = {}
    for r in rules:
        if r.check is not None:
            for event_type in r.types:
                checks.setdefault(event_type, []).append(r)
    return {t: _compile(t, folds.get(t), checks.get(t, ()), check_guards=check_guards)
            for t in sorted({*folds, *checks})}


_HANDLERS: Final = handlers(RULES)


class FindingsProjection(Projection):
    """The compliance findings view: one ``findings`` row per event that breaks a promise,
    plus the ``findings_*`` state the rules and the time-dependent queries need."""

    name = "findings"
    topics = frozenset(_HANDLERS)
    schema = SCHEMA
    tables = TABLES
    cost = 4.0
    # Its rules read recipients, policy versions and the staff list while applying a
    # person's event: kept per partition, fed every partition's copy (docs/ordering.md).
    registries_per_partition = True

    def __init__(self, cache_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        #: people's states across batches (about a kilobyte each), so a person met again
        #: soon costs no read and no JSON parse
        self.cache = WriteCache(self.name, capacity=max(1, cache_entries // 4))
        #: the registries across batches, valid while ``cache`` is
        self.registries = RegistryCache()
        self.stale_layout = False

    def create(self, tx: ViewTransaction, *, indexes: bool = True) -> None:
        super().create(tx, indexes=indexes)
        create_meta(tx, self.name)  # the row whose token guards the cache
        # Views built before registries were kept per partition cannot be carried on; a
        # rebuild (built aside in the new layout, then swapped in) can still run.
        self.stale_layout = "partition" not in tx.columns(POLICIES_TABLE)

    def drop(self, tx: ViewTransaction) -> None:
        super().drop(tx)
        drop_meta(tx, self.name)

    def merge(self, tx: ViewTransaction, source: str) -> None:
        # A finding about no one, and an incident's opening, come from an event about no
        # one: every share has them, naming its own lowest partition's copy. Keep the
        # lowest partition's of all, as one process reading every partition does.
        # (Registries are keyed by partition: shares hold disjoint rows.)
        super().merge(tx, source)
        tx.execute(
            f'UPDATE main.{FINDINGS_TABLE} AS f SET partition = s.partition, "offset" = '
            "s.\"offset\", time = s.time, explanation = s.explanation "
            f"FROM {source}.{FINDINGS_TABLE} AS s WHERE f.pseudonym IS NULL AND "
            "s.pseudonym IS NULL AND s.event_id = f.event_id AND s.clause = f.clause "
            "AND s.partition < f.partition")
        tx.execute(
            f'UPDATE main.{INCIDENTS_TABLE} AS f SET partition = s.partition, "offset" = '
            "s.\"offset\" "
            f"FROM {source}.{INCIDENTS_TABLE} AS s WHERE s.incident_id = f.incident_id "
            "AND s.event_id = f.event_id AND s.partition < f.partition")

    def apply(self, tx: ViewTransaction, items: Sequence[Item]) -> None:
        if self.stale_layout:
            raise ConfigurationError(
                "the findings view was built before registries were kept per partition "
                "(docs/ordering.md): rebuild it (`pdl rebuild findings`)")
        states = self.cache.begin(tx, items)
        if self.cache.restarted:
            self.cache.complete = not tx.query(f"SELECT 1 FROM {SUBJECTS_TABLE} LIMIT 1")
            self.registries.clear()
        batch = Batch(tx, items, states, self.cache.complete, self.registries)
        handle = _HANDLERS
        current = items[0].record.partition if items else -1
        for item in items:
            partition = item.record.partition
            if partition != current:
                batch.enter(partition)
                current = partition
            handle[item.event.type](batch, item)
        batch.flush()
