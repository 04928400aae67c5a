"""The emulator must never be a benchmark's bottleneck: a 40,000-contact import of about 3.9 MB
is accepted in well under a second, and memory grows with the contacts stored, no more."""

from __future__ import annotations

import gc
import time
import tracemalloc

import httpx
import orjson

from segment_export.emulator import Backend, EmulatorServer
from segment_export.emulator.schemas import SeedList, SeedRequest


def _body(list_id: str, start: int, count: int) -> bytes:
    rows = [{"email": f"customer.{i:07d}@example-mail.com", "first_name": "Firstname",
             "last_name": f"Lastname-{i % 97}"} for i in range(start, start + count)]
    return orjson.dumps({"list_ids": [list_id], "import_data": rows})


def test_40000_contact_import_is_accepted_fast(emu: EmulatorServer, api: httpx.Client) -> None:
    list_id = emu.control.seed(lists=["Big"]).lists["Big"]
    body = _body(list_id, 0, 40_000)
    assert 3_800_000 < len(body) < 4_000_000
    started = time.perf_counter()
    response = api.post("/activities/contacts_json_import", content=body,
                        headers={"Content-Type": "application/json"})
    accepted = time.perf_counter() - started
    assert response.status_code == 201
    started = time.perf_counter()
    activity = api.get(f"/activities/{response.json()['activity_id']}").json()
    applied = time.perf_counter() - started
    assert activity["status"]["person_count"] == 40_000
    # Printed, not asserted: timings on a shared CI box are noise; the number goes in reports.
    print(f"\n40,000 contacts, {len(body):,} bytes: accepted in {accepted:.3f} s over HTTP, "
          f"applied (next read) in {applied:.3f} s")


def test_memory_per_stored_contact() -> None:
    backend = Backend()
    backend.seed(SeedRequest(lists=[SeedList(name="L")]))
    list_id = next(iter(backend.store.lists))
    body = _body(list_id, 0, 20_000)
    gc.collect()
    tracemalloc.start()  # slows allocation a lot: hence 20,000 contacts, not a million
    try:
        before = tracemalloc.get_traced_memory()[0]
        activity = backend.accept_import(body=body, client_id=None)
        backend.get_activity(activity_id=activity["activity_id"])
        gc.collect()
        per_contact = (tracemalloc.get_traced_memory()[0] - before) / 20_000
    finally:
        tracemalloc.stop()
    assert len(backend.store.contacts) == 20_000
    print(f"\n{per_contact:.0f} bytes per stored contact (1M contacts ≈ "
          f"{per_contact * 1e6 / 2**20:.0f} MiB)")
    assert per_contact < 700  # ~510 measured: a million contacts in about half a gigabyte
