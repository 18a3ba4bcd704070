"""Policy versions: consents given under a version a material change replaced, and
material changes notified before they take effect (sections 3.1, 8)."""

from __future__ import annotations

from consumers.findings.registry import rule
from consumers.findings.store import Batch
from consumers.projection import Item
from schemas import events as ev


@rule("8", "consent from a superseded policy version relied on after a material change",
      reads=(ev.DataUsed, ev.DataShared), when="data.consent_id is not None")
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


@rule("8", "material policy change notified after it took effect",
      reads=(ev.PolicyNoticeSent,))
def notified_late(batch: Batch, item: Item, data: ev.PolicyNoticeSent) -> str | None:
    """8: a material change is notified *before* it takes effect (3.1: updates promptly)."""
    version = batch.policies.get(data.policy_version)
    if version is not None and version.material and item.at >= version.effective_at:
        return (f"notice of material policy {data.policy_version} sent by {data.channel} "
                "after it took effect")
    return None
