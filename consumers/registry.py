"""Every projection the ledger maintains, and where their views live."""

from __future__ import annotations

from consumers.access import AccessProjection
from consumers.clock import ClockProjection
from consumers.datamap import DataMapProjection
from consumers.disclosures import DisclosureProjection
from consumers.inventory import InventoryProjection
from consumers.projection import Projection
from consumers.rows import DEFAULT_CACHE_ENTRIES
from consumers.scope import HoldingsProjection
from consumers.views import SQLiteViewStore, ViewStore
from ledger.errors import NotFound
from ledger.settings import Settings


def all_projections(cache_entries: int = DEFAULT_CACHE_ENTRIES) -> list[Projection]:
    """Fresh instances of every projection, the findings rules included when installed;
    ``cache_entries`` bounds what each keeps in memory between batches
    (``LEDGER_VIEW_CACHE_ENTRIES``, see ``consumers.rows.WriteCache``)."""
    projections: list[Projection] = [
        DataMapProjection(cache_entries), DisclosureProjection(),
        HoldingsProjection(cache_entries), AccessProjection(), ClockProjection(),
        InventoryProjection(),
    ]
    try:
        from consumers.findings import FindingsProjection
    except ModuleNotFoundError as exc:
        if exc.name != "consumers.findings":
            raise
    else:
        projections.append(FindingsProjection(cache_entries))
    return projections


def projection_names() -> list[str]:
    return [p.name for p in all_projections()]


def select(names: list[str] | None = None,
           projections: list[Projection] | None = None) -> list[Projection]:
    """The projections called ``names`` (all if None), from ``projections`` (default: fresh
    instances of all); ``NotFound`` names the known ones."""
    if projections is None:
        projections = all_projections()
    if names is None:
        return projections
    known = {p.name: p for p in projections}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise NotFound(f"no projection called {', '.join(unknown)}; "
                       f"the projections are: {', '.join(known)}")
    return [known[n] for n in names]


def open_views(settings: Settings) -> ViewStore:
    """The view store of these settings: PostgreSQL if ``LEDGER_VIEWS_URL`` names one
    (``consumers.postgres``), else the SQLite file (``LEDGER_VIEWS_PATH``, default
    ``DATA_DIR/views.db``; page cache ``LEDGER_VIEW_CACHE_MB``)."""
    if settings.views_url:
        from consumers.postgres import PostgresViewStore  # psycopg only when chosen

        return PostgresViewStore(settings.views_url)
    return SQLiteViewStore(settings.views_file, cache_mb=settings.view_cache_mb)
