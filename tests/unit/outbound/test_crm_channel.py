"""The crm channel: batching, per-item outcomes, classification (against a recording backend).

The vendor backends are tested against their fakes in test_crm_salesforce/test_crm_hubspot; here
the backend is a plain recorder so the channel's own batching and error rules are pinned down.
"""

from __future__ import annotations

import asyncio
import threading

import orjson
import pytest

from junction.core.errors import FatalError, InternalError, RateLimitedError
from outbound.base import Delivery
from outbound.crm import CrmWriteBackChannel, CrmWriteBackConfig
from outbound.crm.base import WriteBack, WriteResult


class Recorder:
    system = "recorder"
    options_model = None
    max_batch = 3

    def __init__(self, fail=None, raise_exc=None, short=False):
        self.calls: list[list[WriteBack]] = []
        self.fail = fail or set()
        self.raise_exc = raise_exc
        self.short = short
        self.closed = 0
        self.lock = threading.Lock()

    def write(self, items):
        with self.lock:
            self.calls.append(list(items))
        if self.raise_exc is not None:
            raise self.raise_exc
        out = [
            WriteResult(error=FatalError("row rejected", code="crm_row_error"))
            if it.target in self.fail
            else WriteResult(remote_id=it.target)
            for it in items
        ]
        return out[:-1] if self.short else out

    def close(self):
        self.closed += 1


def _config(**over):
    base = {
        "system": "salesforce",
        "connection": {},
        "object": "Lead",
        "fields": {
            "score.value_pct": "Score__c",
            "score.grade": "Grade__c",
            "score.top_factors": "Factors__c",
        },
        "batch_window_s": 0.02,
    }
    base.update(over)
    return CrmWriteBackConfig.model_validate(base)


def _delivery(i, target=None, score=True):
    event = {
        "type": "lead.scored",
        "record_id": f"p:{i}",
        "source_key": target or f"00Q{i:03d}",
        "record": {"external_id": f"ext{i}", "email": f"u{i}@example.com"},
        "score": {
            "value": 0.8765,
            "grade": "A",
            "top_factors": [["page_views", 0.8123], ["industry=software", -0.1], ["x", 0.01]],
            "model_version": "v1",
        }
        if score
        else None,
    }
    return Delivery(f"d{i}", "crm.sf", "lead.scored", orjson.dumps(event))


def _send_all(channel, deliveries):
    async def go():
        try:
            return await asyncio.gather(
                *(channel.send(d) for d in deliveries), return_exceptions=True
            )
        finally:
            await channel.aclose()

    return asyncio.run(go())


def test_concurrent_deliveries_share_batches_of_at_most_max_batch():
    rec = Recorder()
    out = _send_all(CrmWriteBackChannel(_config(), backend=rec), [_delivery(i) for i in range(7)])
    assert [r.remote_id for r in out] == [f"00Q{i:03d}" for i in range(7)]
    assert [len(c) for c in rec.calls] == [3, 3, 1]
    first = rec.calls[0][0]
    assert first.object_type == "Lead"
    assert first.fields == {
        "Score__c": 88,
        "Grade__c": "A",
        "Factors__c": "page_views +0.81; industry=software -0.10; x +0.01",
    }
    assert rec.closed == 1


def test_a_partial_failure_fails_only_its_own_delivery():
    rec = Recorder(fail={"00Q001"})
    out = _send_all(CrmWriteBackChannel(_config(), backend=rec), [_delivery(i) for i in range(3)])
    assert out[0].remote_id == "00Q000"
    assert isinstance(out[1], FatalError)
    assert out[2].remote_id == "00Q002"


def test_a_failed_call_fails_every_item_with_the_typed_error():
    rec = Recorder(raise_exc=RateLimitedError("slow down", retry_after=9))
    out = _send_all(CrmWriteBackChannel(_config(), backend=rec), [_delivery(i) for i in range(2)])
    assert all(isinstance(o, RateLimitedError) and o.retry_after == 9 for o in out)


def test_an_unexpected_backend_bug_is_an_internal_error_not_a_crash():
    out = _send_all(
        CrmWriteBackChannel(_config(), backend=Recorder(raise_exc=KeyError("x"))), [_delivery(1)]
    )
    assert isinstance(out[0], InternalError)
    out = _send_all(CrmWriteBackChannel(_config(), backend=Recorder(short=True)), [_delivery(1)])
    assert isinstance(out[0], InternalError)


def test_one_record_twice_in_a_window_is_written_in_two_calls_in_order():
    rec = Recorder()
    deliveries = [_delivery(1, "00QSAME"), _delivery(2, "00QSAME"), _delivery(3)]
    out = _send_all(CrmWriteBackChannel(_config(), backend=rec), deliveries)
    assert all(r.remote_id for r in out)
    assert [[i.delivery_id for i in c] for c in rec.calls] == [["d1", "d3"], ["d2"]]


def test_target_from_a_record_field_and_missing_values():
    ch = CrmWriteBackChannel(
        _config(target="record.external_id", match="external_id:Ext__c"), backend=Recorder()
    )
    assert ch.item_of(_delivery(5)).target == "ext5"
    with pytest.raises(FatalError) as info:
        ch.item_of(_delivery(5, score=False))
    assert info.value.code == "nothing_to_write"
    with pytest.raises(FatalError) as info:
        ch.item_of(Delivery("d", "crm.sf", "lead.scored", b"{not json"))
    assert info.value.code == "bad_payload"
    no_target = Delivery("d", "crm.sf", "lead.scored", orjson.dumps({"score": {"value": 1}}))
    with pytest.raises(FatalError) as info:
        ch.item_of(no_target)
    assert info.value.code == "no_crm_target"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"fields": {"score.nope": "X"}}, "unknown write-back value"),
        ({"match": "external_id:"}, "match is"),
        ({"fields": {}}, "at least 1"),
    ],
)
def test_config_is_validated(bad, message):
    with pytest.raises(ValueError, match=message):
        _config(**bad)


def test_a_closed_channel_refuses_new_work():
    ch = CrmWriteBackChannel(_config(), backend=Recorder())
    asyncio.run(ch.aclose())
    asyncio.run(ch.aclose())
    with pytest.raises(FatalError):
        asyncio.run(ch.send(_delivery(1)))


class RefusesBatchesWith(Recorder):
    """A CRM that refuses a whole call when it holds a bad record (as a 400 does)."""

    def __init__(self, bad):
        super().__init__()
        self.bad = bad

    def write(self, items):
        with self.lock:
            self.calls.append(list(items))
        if any(it.target == self.bad for it in items):
            raise FatalError("INVALID_FIELD", code="crm_rejected")
        return [WriteResult(remote_id=it.target) for it in items]


def test_a_refused_call_is_split_until_the_bad_record_stands_alone():
    rec = RefusesBatchesWith(bad="00Q001")
    rec.max_batch = 3
    out = _send_all(CrmWriteBackChannel(_config(), backend=rec), [_delivery(i) for i in range(3)])
    assert out[0].remote_id == "00Q000"
    assert isinstance(out[1], FatalError)
    assert out[2].remote_id == "00Q002"
    sizes = [len(c) for c in rec.calls]
    assert sizes[0] == 3  # one call first, then halves until the refused record stands alone
    assert sum(1 for c in rec.calls if [i.target for i in c] == ["00Q001"]) == 1
