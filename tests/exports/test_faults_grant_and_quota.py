"""Runs that lose their grant or their day's quota, against the emulator over real HTTP.

A rotated refresh token reused: the run fails clearly, the connection needs re-authorization,
an alert fires and nothing unconfirmed is recorded as delivered. The daily quota used up: the
run pauses until the reset, the scheduler's tick resumes it, and no confirmed batch is sent
again. Each ends with the list exactly right after the fix (re-authorize, or the reset)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from segment_export.cli import cli
from segment_export.db.models import Connection, RunBatch
from segment_export.errors import ConfigurationError
from segment_export.exports.alerts import set_webhook
from segment_export.exports.delivery import BatchMembers
from segment_export.exports.runs import (
    RunRequest,
    cancel_run,
    get_run,
    request_run,
    retry_at,
    run_to_completion,
)
from segment_export.languages import when
from segment_export.scheduling.queue import TaskQueue
from segment_export.scheduling.runtime import Runtime
from segment_export.scheduling.schedules import tick
from tests.exports.faults_support import (
    assert_accounted,
    assert_exact,
    delivered,
    deps,
    expected,
    imports,
    prepare,
    reauthorize,
    run,
)
from tests.world import CLIENT_ID, World


def _after_imports(world: World, count: int, action: Any) -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + 30
        while len(imports(world)) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        action()

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


def _connection(world: World) -> Connection:
    with world.sessions() as session:
        found = session.get(Connection, world.connection.id)
        assert found is not None
        return found


def _confirmed_keys(world: World, run_id: str) -> list[int]:
    with world.sessions() as session:
        batches = session.scalars(select(RunBatch).where(
            RunBatch.run_id == run_id, RunBatch.state == "confirmed")).all()
    keys: list[int] = []
    for batch in batches:
        assert batch.members is not None
        keys.extend(BatchMembers.unpack_keys(batch.members)[0].tolist())
    return keys


@pytest.mark.slow
def test_reused_rotated_refresh_token_needs_reauthorization(
        world: World, webhook: tuple[str, list[dict[str, Any]]]) -> None:
    url, alerts = webhook
    with world.sessions.begin() as session:
        set_webhook(session, actor=world.admin, url=url)
    n, batch = 1500, 100
    export = prepare(world, n, batch=batch)
    # Slow activities: after the tenth import the run still polls for seconds, so the fault
    # lands mid-run however loaded the machine is.
    world.control.set_config(activity_seconds=1.5)
    grant_before = _connection(world)

    def lose_the_rotation() -> None:
        # The token endpoint rotates the refresh token, then the answer is lost: the client's
        # retry presents the old one, a reuse, and Constant Contact revokes the whole chain.
        world.control.inject_fault(kind="drop", when="after", path_prefix="/oauth2")
        world.control.expire_tokens()

    # After ten imports: more than the eight in flight at once, so some are confirmed.
    watcher = _after_imports(world, 10, lose_the_rotation)
    failed = run(world, export)
    watcher.join()

    assert failed.status == "failed"
    assert failed.error_kind == "reauthorization_needed"
    assert "re-authorize" in (failed.message or "").lower()
    refreshes = [r for r in world.control.requests() if r.path.endswith("/token")]
    assert [r.fault for r in refreshes][-2:] == ["drop:after", None]
    assert refreshes[-1].status == 400  # invalid_grant: the rotated token was reused
    conn = _connection(world)
    assert conn.status == "reauthorization_needed"
    assert "grant" in (conn.last_error or "")
    # The lost rotation wrote nothing: the stored grant is the one from before the run.
    assert conn.token_version == grant_before.token_version
    assert conn.refresh_token == grant_before.refresh_token
    assert [a["event"] for a in alerts] == ["run.failed"]
    assert alerts[0]["run_id"] == failed.id
    assert "re-authoriz" in alerts[0]["message"].lower()

    # Nothing half-written: only batches Constant Contact confirmed count as delivered, and all
    # of their contacts are on the list.
    partial = world.members()
    confirmed = delivered(world, export)
    with world.sessions() as session:
        states = set(session.scalars(select(RunBatch.state).where(
            RunBatch.run_id == failed.id)))
    assert 0 < len(confirmed) < n
    assert confirmed <= partial
    assert len(_confirmed_keys(world, failed.id)) == len(confirmed)
    assert states <= {"pending", "sent", "confirmed"}
    world.control.set_config(activity_seconds=0)
    # No export can run on the dead grant: the next one fails at once, without an import.
    sent_before = len(imports(world))
    again = run(world, export)
    assert (again.status, again.error_kind) == ("failed", "reauthorization_needed")
    assert len(imports(world)) == sent_before

    reauthorize(world)
    assert _connection(world).status == "connected"
    sent_before = len(imports(world))
    finished = run(world, export)
    assert finished.status == "succeeded", finished.message
    assert_exact(world, world.list_id, expected(n))
    assert_accounted(finished, n)
    # The failed run's imports still in flight were settled from their activities: those
    # that completed are not sent again; only a batch whose request never got its answer
    # (``unknown``: it may not have been sent at all) is.
    with world.sessions() as session:
        left = session.scalars(select(RunBatch).where(RunBatch.run_id == failed.id)).all()
    assert {b.state for b in left} <= {"confirmed", "unknown"}
    settled = sum(b.contacts for b in left if b.state == "confirmed")
    assert settled > len(confirmed)  # more than the failed run had confirmed itself
    assert finished.counts["unchanged"] == settled
    assert finished.counts["sent"] == n - settled


def _cli_env(world: World) -> dict[str, str]:
    settings = world.settings
    return {"SEGMENT_EXPORT_DATA_DIR": str(settings.data_dir),
            "SEGMENT_EXPORT_SECRET_KEY": ",".join(k.decode() for k in settings.encryption_keys),
            "SEGMENT_EXPORT_CC_API_URL": settings.cc_api_url,
            "SEGMENT_EXPORT_CC_AUTH_URL": settings.cc_auth_url,
            "SEGMENT_EXPORT_IMPORT_BATCH_CONTACTS": str(settings.import_batch_contacts),
            "COLUMNS": "200"}


def test_daily_quota_pauses_the_run_and_the_tick_resumes_it_after_the_reset(
        world: World, webhook: tuple[str, list[dict[str, Any]]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    url, alerts = webhook
    with world.sessions.begin() as session:
        set_webhook(session, actor=world.admin, url=url)
    n, batch = 1000, 100
    export = prepare(world, n, batch=batch)
    world.control.set_config(activity_seconds=0.05)
    used = world.control.state()["usage_today"][CLIENT_ID]
    world.control.set_config(daily_quota=used + 6)  # a few imports and polls, then no more

    paused = run(world, export)
    assert paused.status == "paused", paused.message
    assert paused.error_kind == "quota_exhausted"
    resets = retry_at(paused)
    assert resets is not None
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    assert resets == datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=UTC)
    assert resets.isoformat() in (paused.message or "")
    assert "resumes by itself" in (paused.message or "")
    assert alerts == []  # not a failure: nobody needs to act
    partial = world.members()
    assert 0 < len(partial) < n
    confirmed_before = _confirmed_keys(world, paused.id)

    # The command line says so too: `runs show` names the reset; `runs resume` before the
    # reset pauses again at once, with exit status 75 (the run is not done, but will be).
    for key, value in _cli_env(world).items():
        monkeypatch.setenv(key, value)
    shown = CliRunner().invoke(cli, ["runs", "show", paused.id], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert "paused" in shown.output
    assert f"Resumes after {when(resets, 'en')}" in shown.output
    early = CliRunner().invoke(cli, ["runs", "resume", paused.id], catch_exceptions=False)
    assert early.exit_code == 75, early.output
    assert len([r for r in imports(world) if r.status == 201]) < n // batch  # nothing more went

    # While it waits, the export is taken: no second run starts and sends into the quota.
    with world.sessions.begin() as session, pytest.raises(ConfigurationError, match="paused"):
        request_run(session, actor=world.admin, export=export)

    queue = TaskQueue(Runtime(world.settings, engine=world.engine, store=world.store),
                      immediate=True)
    queue.runtime.deps = lambda: deps(world)  # type: ignore[method-assign]
    tick(queue.runtime, enqueue=queue.enqueue_run, now=resets - timedelta(minutes=1))
    with world.sessions() as session:
        assert get_run(session, run_id=paused.id).status == "paused"  # not before the reset

    # 00:00 UTC at the emulator: a new day's whole quota (the tight one modelled a day nearly
    # used up; each attempt now also reads the account's unsubscribes).
    world.control.set_config(daily_quota=10_000)
    world.control.reset_quota()
    tick(queue.runtime, enqueue=queue.enqueue_run, now=resets + timedelta(seconds=30))
    with world.sessions() as session:
        resumed = get_run(session, run_id=paused.id)
    assert resumed.status == "succeeded", resumed.message
    assert "retry_at" not in resumed.counts
    assert_exact(world, world.list_id, expected(n))
    assert_accounted(resumed, n)
    assert alerts == []

    # Nothing confirmed before the pause was sent again; in fact every contact went once.
    keys = _confirmed_keys(world, paused.id)
    assert set(confirmed_before) <= set(keys)
    assert len(keys) == len(set(keys)) == n
    accepted = [r for r in imports(world) if r.status == 201]
    assert len(accepted) == n // batch


def test_a_paused_run_can_be_cancelled_or_resumed_by_hand(world: World) -> None:
    export = prepare(world, 300, batch=100)
    used = world.control.state()["usage_today"][CLIENT_ID]
    world.control.set_config(daily_quota=used + 2)
    paused = run(world, export)
    assert paused.status == "paused"

    # `runs resume` before the reset (say the plan's quota was raised): it continues at once.
    world.control.set_config(daily_quota=10_000)
    resumed = run_to_completion(paused.id, deps=deps(world), backoff=0.01)
    assert resumed.status == "succeeded", resumed.message
    assert_exact(world, world.list_id, expected(300))

    world.control.set_config(daily_quota=world.control.state()["usage_today"][CLIENT_ID])
    with world.sessions.begin() as session:
        resync = request_run(session, actor=world.admin, export=export,
                             request=RunRequest(full_resync=True))
    again = run_to_completion(resync.id, deps=deps(world), backoff=0.01)
    assert again.status == "paused"
    with world.sessions.begin() as session:
        cancelled = cancel_run(session, actor=world.admin, run=get_run(session, run_id=again.id))
        assert cancelled.status == "cancelled"
    with world.sessions() as session:
        assert get_run(session, run_id=again.id).status == "cancelled"
    # Nothing resumes a cancelled run: the tick passes it by, even after the reset.
    queued: list[str] = []
    tick(Runtime(world.settings, engine=world.engine, store=world.store), enqueue=queued.append,
         now=datetime.now(UTC) + timedelta(days=2))
    assert queued == []


def test_a_resumed_full_resync_does_not_send_its_confirmed_batches_again(world: World) -> None:
    n, batch = 300, 100
    export = prepare(world, n, batch=batch)
    assert run(world, export).status == "succeeded"
    before = len([r for r in imports(world) if r.status == 201])
    # Room for the resync's first imports, not for all of them.
    world.control.set_config(daily_quota=world.control.state()["usage_today"][CLIENT_ID] + 2)
    with world.sessions.begin() as session:
        resync = request_run(session, actor=world.admin, export=export,
                             request=RunRequest(full_resync=True))
    paused = run_to_completion(resync.id, deps=deps(world), backoff=0.01)
    assert paused.status == "paused", paused.message
    sent_before_the_pause = len([r for r in imports(world) if r.status == 201]) - before
    assert 0 < sent_before_the_pause < n // batch

    world.control.set_config(daily_quota=10_000)
    resumed = run_to_completion(paused.id, deps=deps(world), backoff=0.01)
    assert resumed.status == "succeeded", resumed.message
    assert_exact(world, world.list_id, expected(n))
    keys = _confirmed_keys(world, paused.id)
    assert len(keys) == len(set(keys)) == n  # every contact once, none of them twice
    assert len([r for r in imports(world) if r.status == 201]) - before == n // batch
