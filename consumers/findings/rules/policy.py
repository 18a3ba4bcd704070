"""Policy versions: consents given under a version a material change replaced (section 8)."""

from __future__ import annotations

from consumers.findings.registry import rule
from consumers.findings.store import Batch
from consumers.projection import Item
from schemas import events as ev


@rule("8", "consent from a superseded policy version relied on after a material change",
      reads=(ev.DataUsed, ev.DataShared))
def superseded_consent(batch: Batch, item: Item, data: ev.DataUsed | ev.DataShared) -> str | None:
    if data.consent_id is None:
        return None
    consent = batch.person(item).consents.get(data.consent_id)
    if consent is None:
        return None
    version, at = consent.policy_version, item.at
    known = batch.policies.get(version)
    base = known.effective_at if known is not None else consent.granted
    newer = sorted(
        (p.effective_at, v) for v, p in batch.policies.items()
        if p.material and v != version and base < p.effective_at <= at
    )
    if newer:
        return (f"consent given under policy {version} relied on after material policy "
                f"{newer[-1][1]} took effect")
    return None
