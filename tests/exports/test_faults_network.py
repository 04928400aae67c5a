"""Runs over a bad network, against the emulator over real HTTP: connections cut mid-upload,
read timeouts after Constant Contact already accepted an import, and slow answers. Each ends
with the list exactly right, no contact created twice and every member accounted for."""

from __future__ import annotations

import time

from tests.exports.faults_support import (
    assert_accounted,
    assert_exact,
    expected,
    imports,
    prepare,
    run,
)
from tests.world import World

IMPORT_PATH = "/v3/activities/contacts_json_import"


def test_connections_cut_mid_upload_are_sent_again(world: World) -> None:
    # Batches of 2,000 contacts (about 160 KB): more than the server reads in one go, so the
    # cut lands while the client is still uploading the body.
    n, batch = 6000, 2000
    export = prepare(world, n, batch=batch)
    world.control.inject_fault(kind="drop", when="during", count=3, path_prefix=IMPORT_PATH)
    done = run(world, export)
    assert done.status == "succeeded", done.message
    assert_exact(world, world.list_id, expected(n))
    assert_accounted(done, n)
    assert done.counts["sent"] == n  # each contact counted once, however often it was sent
    log = imports(world)
    cut = [r for r in log if r.fault == "drop:during"]
    whole = [r for r in log if r.fault is None]
    assert len(cut) == 3
    assert len(whole) == n // batch
    assert all(r.status == 0 for r in cut)
    assert max(r.request_bytes for r in cut) < min(r.request_bytes for r in whole)


def test_read_timeout_after_the_import_was_accepted(world: World) -> None:
    # The emulator accepts the import, then holds the answer longer than the client waits: the
    # client gives up and sends the batch again, so Constant Contact gets it twice.
    n, batch = 600, 100
    export = prepare(world, n, batch=batch)
    world.control.inject_fault(kind="slow", when="after", delay=1.5, count=2,
                               path_prefix=IMPORT_PATH)
    done = run(world, export, read_timeout=0.4)
    assert done.status == "succeeded", done.message
    assert_exact(world, world.list_id, expected(n))
    assert_accounted(done, n)
    assert done.counts["sent"] == n
    log = imports(world)
    assert len([r for r in log if r.fault == "slow:after"]) == 2
    assert len(log) == n // batch + 2  # the two timed-out batches were sent again, nothing else
    # Both copies of a timed-out batch became activities at Constant Contact.
    activities = world.control.state()["activities"]
    assert activities["total"] >= n // batch + 2


def test_read_timeouts_and_lost_connections_while_polling(world: World) -> None:
    n = 500
    export = prepare(world, n, batch=100)
    world.control.set_config(activity_seconds=0.1)
    world.control.inject_fault(kind="slow", delay=1.0, count=2, path_prefix="/v3/activities",
                               method="GET")
    world.control.inject_fault(kind="drop", count=2, path_prefix="/v3/activities", method="GET")
    done = run(world, export, read_timeout=0.4)
    assert done.status == "succeeded", done.message
    assert_exact(world, world.list_id, expected(n))
    assert_accounted(done, n)
    assert len(imports(world)) == 5  # polls failed, uploads did not repeat
    faults = [r.fault for r in world.control.requests() if r.fault]
    assert sorted(faults) == ["drop", "drop", "slow", "slow"]


def test_slow_answers_within_the_timeout(world: World) -> None:
    n = 400
    export = prepare(world, n, batch=100)
    since = world.control.requests()[-1].seq
    world.control.inject_fault(kind="slow", delay=0.25, count=1000)  # every API answer is slow
    started = time.monotonic()
    done = run(world, export, read_timeout=5.0)
    took = time.monotonic() - started
    world.control.clear_faults()
    assert done.status == "succeeded", done.message
    assert_exact(world, world.list_id, expected(n))
    assert_accounted(done, n)
    api = [r for r in world.control.requests(since) if r.path.startswith("/v3")]
    assert api
    assert all(r.fault == "slow" and r.duration >= 0.25 for r in api)
    assert all(200 <= r.status < 300 for r in api)  # slow, but never given up on
    assert took >= len(api) * 0.25 / 2  # waited for: at most two answers were awaited at once
    assert len(imports(world)) == n // 100  # nothing was sent twice
