"""The rule registry: every clause has rules, every rule fires on a story of
``test_findings`` (whose compliant variants fire nothing), and the docs' clause map names
exactly the registered clauses."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_findings import NOW, RULES as STORIES, every_story, project

from consumers import findings as findings_module
from consumers.findings import CLAUSES, RULES, Clocks, Rule
from consumers.findings.registry import CLOCKS
from consumers.findings.view import handlers
from consumers.projection import Item
from consumers.rows import to_us
from ledger.application import Ledger
from ledger.errors import ConfigurationError
from ledger.settings import Settings
from schemas import events as ev

DOCS = Path(__file__).resolve().parent.parent / "docs" / "findings.md"


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    with Ledger(settings) as ledger:
        yield ledger


def test_every_rule_is_well_formed_and_clauses_come_from_the_registry() -> None:
    assert set(CLAUSES) == {r.clause for r in RULES}
    assert len({(r.family, r.name) for r in RULES}) == len(RULES)
    for r in RULES:
        assert r.title and r.reads and all(issubclass(m, ev.EventData) for m in r.reads)
        assert (r.check is None) != (r.evaluate is None), r.name
        assert bool(r.clocks) == (r.evaluate is not None), r.name
        assert set(r.clocks) <= set(CLOCKS)
        assert r.title in CLAUSES[r.clause]


def test_every_registered_clause_has_a_firing_and_a_compliant_story() -> None:
    # test_findings runs each story twice: its violation fires exactly ``expected``, its
    # compliant variant fires nothing.
    assert {c for story in STORIES for c in story.expected} == set(CLAUSES)


def _spy(r: Rule, fired: set[str]) -> Callable[..., str | None]:
    assert r.check is not None
    check = r.check

    def spied(batch: Any, item: Item, data: Any) -> str | None:
        why = check(batch, item, data)
        if why is not None:
            fired.add(r.name)
        return why

    return spied


def test_every_rule_fires_on_some_story(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    fired: set[str] = set()
    spied = [replace(r, check=_spy(r, fired)) if r.check is not None else r for r in RULES]
    for event_type, handle in handlers(spied).items():
        monkeypatch.setitem(findings_module._HANDLERS, event_type, handle)
    ledger.publish(every_story())
    store = project(ledger)
    clocks = Clocks(to_us(NOW), 15, 15, 2)
    for r in RULES:
        if r.evaluate is not None and any(True for _ in r.evaluate(store, clocks)):
            fired.add(r.name)
    assert {r.name for r in RULES} - fired == set()


def test_the_docs_clause_map_names_exactly_the_registered_clauses() -> None:
    clause_map = DOCS.read_text().split("## Clause map", 1)[1]
    rows = re.findall(r"^\| `([^`]+)` \|", clause_map, re.MULTILINE)
    assert rows, f"no clause rows in {DOCS}"
    assert len(rows) == len(set(rows))
    assert set(rows) == set(CLAUSES)


# --- guards (``Rule.when``): tested inline, false only where the rule finds nothing --------

def test_guards_are_false_only_where_their_rule_finds_nothing(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every rule called on every event, its guard tested beside it: a guard false where
    its rule found something raises. Over every story (violating and compliant) and the
    workload log of test_view_digests, whose views must come out as recorded."""
    import test_view_digests

    for event_type, handle in handlers(RULES, check_guards=True).items():
        monkeypatch.setitem(findings_module._HANDLERS, event_type, handle)
    ledger.publish(every_story())
    store = project(ledger)
    assert len({c for (c,) in store.query("SELECT clause FROM findings")}) >= 30
    recorded = json.loads(test_view_digests.DIGESTS.read_text())
    assert test_view_digests.build(tmp_path) == recorded


def test_a_rule_whose_guard_is_false_is_not_called(ledger: Ledger,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def check(batch: Any, item: Item, data: ev.DataUsed) -> str | None:
        calls.append(data.purpose)
        return "found"

    guarded = Rule("9.9", "test", (ev.DataUsed,), "tests", "guarded", check=check,
                   when="data.purpose in MARKETING and person.subscriptions is not None",
                   module="consumers.findings.rules.marketing")
    for event_type, handle in handlers([guarded]).items():
        monkeypatch.setitem(findings_module._HANDLERS, event_type, handle)
    ledger.publish(every_story())
    store = project(ledger)
    assert calls and all(p.startswith("marketing.") for p in calls)
    assert store.query("SELECT count(*) FROM findings WHERE clause = '9.9'") == [(len(calls),)]


def test_a_guard_must_be_an_expression_over_known_names() -> None:
    with pytest.raises(ValueError, match="not an expression"):
        findings_module.rule("9.9", "test", reads=(ev.DataUsed,), when="data.purpose in")
    unknown = Rule("9.9", "test", (ev.DataUsed,), "tests", "unknown",
                   check=lambda batch, item, data: None, when="data.purpose in NOWHERE",
                   module=__name__)
    with pytest.raises(ConfigurationError, match="NOWHERE"):
        handlers([unknown])
