"""The rule registry: every clause has rules, every rule fires on a story of
``test_findings`` (whose compliant variants fire nothing), and the docs' clause map names
exactly the registered clauses."""

from __future__ import annotations

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
