"""Runs under faults: every one ends with the list exactly right and every row accounted for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from segment_export.db.models import Export
from segment_export.exports.runs import list_runs, request_run, run_to_completion
from tests.world import World


def _people(n: int) -> list[dict[str, object]]:
    return [{"customer_id": i, "email": f"person{i}@example.com", "first_name": f"P{i}",
             "last_name": "Doe", "country": "DE", "consent": True} for i in range(1, n + 1)]


def _expected(n: int) -> set[str]:
    return {f"person{i}@example.com" for i in range(1, n + 1)}


def _prepare(world: World, n: int, *, batch: int = 100) -> Export:
    world.settings = world.settings.model_copy(update={"import_batch_contacts": batch})
    world.load_profiles(_people(n))
    return world.export("faulty", [world.segment("all", "country = 'DE'")])


def _imports(world: World) -> list[Any]:
    return [r for r in world.control.requests() if r.path.endswith("contacts_json_import")]


def _assert_accounted(run: Any, n: int) -> None:
    c = run.counts
    assert c["in_segment"] == n
    assert c["in_segment"] == c["sent"] + c["unchanged"] + c["rejected_locally"] + c["no_consent"]
    assert c["sent"] == c["accepted"] + c["rejected_by_constant_contact"] + c[
        "unsubscribed_not_added"]


def test_429_storm_is_paced_and_retried(world: World) -> None:
    export = _prepare(world, 500)
    world.control.inject_fault(kind="status", status=429, count=8)
    run = world.run(export)
    assert run.status == "succeeded", run.message
    assert world.members() == _expected(500)
    _assert_accounted(run, 500)


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_burst(world: World, status: int) -> None:
    export = _prepare(world, 300)
    world.control.inject_fault(kind="status", status=status, count=4)
    run = world.run(export)
    assert run.status == "succeeded", run.message
    assert world.members() == _expected(300)


def test_response_lost_after_the_import_was_accepted(world: World) -> None:
    export = _prepare(world, 300)
    world.control.inject_fault(kind="drop", when="after",
                               path_prefix="/v3/activities/contacts_json_import")
    run = world.run(export)
    assert run.status == "succeeded", run.message
    assert world.members() == _expected(300)
    _assert_accounted(run, 300)


def test_failed_and_timed_out_activities_are_sent_again(world: World) -> None:
    export = _prepare(world, 400)
    world.control.fail_activity(1)
    world.control.time_out_activity(1)
    run = world.run(export)
    assert run.status == "succeeded", run.message
    assert run.attempt >= 2
    assert world.members() == _expected(400)
    _assert_accounted(run, 400)


def test_access_token_expires_mid_run(world: World) -> None:
    export = _prepare(world, 1000)
    world.control.set_config(activity_seconds=0.2)

    def expire_after_first_import() -> None:
        deadline = time.monotonic() + 20
        while not _imports(world) and time.monotonic() < deadline:
            time.sleep(0.02)
        world.control.expire_tokens()

    watcher = threading.Thread(target=expire_after_first_import)
    watcher.start()
    run = world.run(export)
    watcher.join()
    assert run.status == "succeeded", run.message
    assert world.members() == _expected(1000)
    assert any(r.path.endswith("/token") for r in world.control.requests())


def test_cancel_mid_run_keeps_confirmed_batches_and_the_next_run_finishes(world: World) -> None:
    export = _prepare(world, 1000)
    world.control.set_config(activity_seconds=0.2)
    with world.sessions.begin() as session:
        run = request_run(session, actor=world.admin, export=export)

    def cancel_after_two_imports() -> None:
        deadline = time.monotonic() + 20
        while len(_imports(world)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        with world.sessions.begin() as session:
            from segment_export.exports.runs import cancel_run, get_run

            cancel_run(session, actor=world.admin, run=get_run(session, run_id=run.id))

    watcher = threading.Thread(target=cancel_after_two_imports)
    watcher.start()
    cancelled = run_to_completion(run.id, deps=world.deps(), backoff=0.01)
    watcher.join()
    assert cancelled.status == "cancelled"
    partial = world.members()
    assert 0 < len(partial) < 1000
    finished = world.run(export)
    assert finished.status == "succeeded"
    assert world.members() == _expected(1000)
    assert finished.counts["unchanged"] == len(partial)


def test_worker_killed_with_sigkill_then_resumed(world: World, tmp_path: Path) -> None:
    n, batch = 2000, 100
    export = _prepare(world, n, batch=batch)
    world.control.set_config(activity_seconds=0.15)
    settings = world.settings
    env = {**os.environ,
           "SEGMENT_EXPORT_DATA_DIR": str(settings.data_dir),
           "SEGMENT_EXPORT_SECRET_KEY": ",".join(k.decode() for k in settings.encryption_keys),
           "SEGMENT_EXPORT_CC_API_URL": settings.cc_api_url,
           "SEGMENT_EXPORT_CC_AUTH_URL": settings.cc_auth_url,
           "SEGMENT_EXPORT_CC_REQUESTS_PER_SECOND": "20",
           "SEGMENT_EXPORT_IMPORT_BATCH_CONTACTS": str(batch)}
    # DuckDB lets one process at a time open the profile store: hand it to the worker.
    world.store.close()
    worker = subprocess.Popen(
        [sys.executable, "-m", "segment_export", "exports", "run", export.name, "--wait"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(_imports(world)) < 6 and time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.02)
    alive = worker.poll() is None
    worker.send_signal(signal.SIGKILL)
    _, stderr = worker.communicate()
    assert alive, (worker.returncode, stderr.decode(), len(_imports(world)))
    before = world.members()
    assert len(before) < n

    with world.sessions() as session:
        (interrupted,) = list_runs(session, export=export, limit=1)
    assert interrupted.status == "running"
    resumed = run_to_completion(interrupted.id, deps=world.deps(), backoff=0.01)
    assert resumed.status == "succeeded", resumed.message
    assert world.members() == _expected(n)
    _assert_accounted(resumed, n)
    # Nothing confirmed was sent again: at most the batches in flight at the kill repeat.
    sent = sum(1 for _ in _imports(world))
    assert sent <= n // batch + 4
