"""Messages and tracking after an opt-out (sections 3.3, 4.2, 7.3)."""

from __future__ import annotations

from consumers.findings.registry import rule
from consumers.findings.store import Batch
from consumers.findings.vocabulary import MARKETING, TRACKING, TRACKING_CARRIER
from consumers.projection import Item
from schemas import events as ev


@rule("3.3", "marketing after opt-out", reads=(ev.DataUsed,), when="person.subscriptions and "
      "(data.purpose in MARKETING or data.message_kind in MARKETING)")
def marketing_after_opt_out(batch: Batch, item: Item, data: ev.DataUsed) -> str | None:
    for kind in (data.purpose, data.message_kind):
        if kind is not None and kind in MARKETING:
            opted_out = batch.person(item).unsubscribed(kind, item.at)
            if opted_out:
                return f"marketing ({kind}) after the person opted out of {opted_out}"
    return None


@rule("4.2", "tracking after unsubscribing", reads=(ev.DataUsed,),
      when="data.purpose in TRACKING and person.subscriptions")
def tracking_after_unsubscribe(batch: Batch, item: Item, data: ev.DataUsed) -> str | None:
    purpose = data.purpose
    if purpose not in TRACKING:
        return None
    person = batch.person(item)
    # A web beacon rides in an e-mail: unsubscribing from that mailing stops it too.
    for kind in (purpose, data.message_kind or TRACKING_CARRIER):
        opted_out = person.unsubscribed(kind, item.at)
        if opted_out:
            return f"tracking ({purpose}) after the person unsubscribed from {opted_out}"
    return None


@rule("7.3", "message of a kind the person unsubscribed from", reads=(ev.DataUsed,),
      when="data.message_kind is not None and person.subscriptions")
def unsubscribed_message(batch: Batch, item: Item, data: ev.DataUsed) -> str | None:
    kind = data.message_kind
    if kind is None:
        return None
    opted_out = batch.person(item).unsubscribed(kind, item.at)
    if opted_out:
        return f"message of kind {kind} sent while unsubscribed from {opted_out}"
    return None
