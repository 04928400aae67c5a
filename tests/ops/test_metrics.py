"""Metrics change as runs happen; the exposition is valid Prometheus text with no personal data."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete

from segment_export import metrics
from segment_export.app import create_app
from segment_export.constant_contact import InProcessRateLimiter
from segment_export.db.models import Export, Run
from segment_export.exports.runs import RunRequest, request_run, run_to_completion
from segment_export.metrics import MeteredRateLimiter, Metrics, endpoint_of
from segment_export.scheduling.queue import TaskQueue
from segment_export.scheduling.runtime import Runtime
from segment_export.segments.refresh import refresh_segments
from segment_export.users import create_api_token
from tests.ops.helpers import people, prepare
from tests.world import World

IMPORT = "/v3/activities/contacts_json_import"


def _run(world: World, m: Metrics, export: Export, *, dry_run: bool = False) -> Run:
    with world.sessions.begin() as session:
        run = request_run(session, actor=world.admin, export=export,
                          request=RunRequest(dry_run=dry_run))
    deps = world.deps(on_request=m.observe_request, progress=m.observe_run)
    return run_to_completion(run.id, deps=deps, backoff=0.01)


def test_endpoints_lose_their_ids() -> None:
    assert endpoint_of("/v3/activities/0b9f6c1e-9d3a-4e7b-8f00-1234567890ab") == \
        "/v3/activities/{id}"
    assert endpoint_of("/v3/contact_lists/0B9F6C1E-9D3A-4E7B-8F00-1234567890AB/x?limit=5") == \
        "/v3/contact_lists/{id}/x"
    assert endpoint_of(IMPORT) == IMPORT


def test_counters_follow_runs_requests_and_removals(world: World) -> None:
    m = Metrics()
    export = prepare(world, 250, bad=6, batch=100, mode="mirror")
    first = _run(world, m, export)
    assert first.status == "succeeded_with_rejections", first.message

    assert m.sample("segment_export_runs_finished_total", status="succeeded_with_rejections",
                    dry_run="false") == 1
    assert m.sample("segment_export_contacts_total", outcome="sent") == 244
    assert m.sample("segment_export_contacts_total", outcome="accepted") == 244
    assert m.sample("segment_export_contacts_total", outcome="rejected_locally") == 6
    assert m.sample("segment_export_contacts_total", outcome="removed") == 0
    imports = m.sample("segment_export_cc_requests_total", method="POST", endpoint=IMPORT,
                       status="201")
    assert imports == 3
    polls = [s for f in m.registry.collect() for s in f.samples
             if s.name == "segment_export_cc_requests_total" and s.labels["method"] == "GET"
             and s.labels["endpoint"].startswith("/v3/activities")]
    assert polls  # activities were polled, one by one or several per listing
    assert all(s.labels["status"] == "200" for s in polls)
    assert {s.labels["endpoint"] for s in polls} <= {"/v3/activities", "/v3/activities/{id}"}
    assert m.sample("segment_export_cc_request_bytes_total", endpoint=IMPORT) > 244 * 20
    assert m.sample("segment_export_cc_request_duration_seconds_count", method="POST",
                    endpoint=IMPORT) == 3
    assert m.sample("segment_export_run_duration_seconds_count") == 1

    # 50 people leave the segment: the mirror run removes them, and a dry run changes nothing.
    world.load_profiles([{**p, "country": "FR" if int(str(p["customer_id"])) <= 50 else "DE"}
                         for p in people(250, bad=6)])
    with world.sessions() as session:
        refresh_segments(session, world.store)
        session.commit()
    dry = _run(world, m, export, dry_run=True)
    assert m.sample("segment_export_runs_finished_total", status=dry.status,
                    dry_run="true") == 1
    assert m.sample("segment_export_contacts_total", outcome="removed") == 0
    second = _run(world, m, export)
    assert second.counts["removed"] == 50, second.counts
    assert m.sample("segment_export_contacts_total", outcome="removed") == 50
    assert m.sample("segment_export_contacts_total", outcome="sent") == 244
    assert m.sample("segment_export_runs_finished_total", status=second.status,
                    dry_run="false") >= 1

    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    text = body.decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"segment_export_runs_finished", "segment_export_contacts",
            "segment_export_cc_requests", "segment_export_rate_limit_wait_seconds",
            "segment_export_token_refreshes", "segment_export_queue_depth"} <= names
    assert "@example.com" not in text
    assert "not-an-email" not in text


def test_rate_waits_token_refreshes_queue_depth_and_runs_by_status(world: World) -> None:
    m = Metrics()
    limiter = MeteredRateLimiter(InProcessRateLimiter(rate=20, daily_quota=100), m)
    waited = sum(limiter.acquire() for _ in range(4))
    assert m.sample("segment_export_rate_limit_wait_seconds_count") == 4
    assert m.sample("segment_export_rate_limit_wait_seconds_sum") == waited > 0.1

    m.observe_token_refresh(ok=True)
    m.observe_token_refresh(ok=False)
    assert m.sample("segment_export_token_refreshes_total", outcome="ok") == 1
    assert m.sample("segment_export_token_refreshes_total", outcome="failed") == 1

    export = prepare(world, 5)
    queue = TaskQueue(Runtime(world.settings, engine=world.engine, store=world.store))
    m.track_queue_depth(queue.huey.pending_count)
    assert m.sample("segment_export_queue_depth") == 0
    with world.sessions.begin() as session:
        run = request_run(session, actor=world.admin, export=export)
    queue.enqueue_run(run.id)
    queue.enqueue_run(run.id)
    assert m.sample("segment_export_queue_depth") == 2
    queue.huey.flush()

    m.track_runs(world.engine)
    assert m.sample("segment_export_runs", status="queued") == 1
    assert m.sample("segment_export_runs", status="succeeded") == 0
    run_to_completion(run.id, deps=world.deps(), backoff=0.01)
    assert m.sample("segment_export_runs", status="queued") == 0
    assert m.sample("segment_export_runs", status="succeeded") == 1
    with world.engine.begin() as conn:
        conn.execute(delete(Run))
    assert m.sample("segment_export_runs", status="succeeded") == 0


def test_served_over_asgi_and_http() -> None:
    m = Metrics()
    m.set_queue_depth(7)

    async def scrape() -> httpx.Response:
        transport = httpx.ASGITransport(app=m.asgi_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as client:
            return await client.get("/")

    answer = asyncio.run(scrape())
    assert answer.status_code == 200
    assert "segment_export_queue_depth 7.0" in answer.text

    served = Metrics.for_process()
    served.set_queue_depth(3)
    body, _ = served.render()
    assert b"segment_export_queue_depth 3.0" in body
    server = metrics.serve("127.0.0.1:0", served)
    try:
        scraped = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5)
        assert "segment_export_queue_depth 3.0" in scraped.text
    finally:
        server.shutdown()
        server.server_close()


def _scrape(app: Any, path: str = "/metrics", *, method: str = "GET",
            token: str | None = None) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.request(method, path, headers=headers)

    return asyncio.run(call())


def _value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def test_two_apps_in_one_process_keep_their_metrics_apart(world: World) -> None:
    export = prepare(world, 5)
    one, other = (create_app(world.settings, runtime=Runtime(
        world.settings, engine=world.engine, store=world.store)) for _ in range(2))
    with world.sessions.begin() as session:
        run = request_run(session, actor=world.admin, export=export)
        token = create_api_token(session, actor=world.admin, user=world.admin,
                                 name="metrics").secret
    # What the in-process worker of `one` does with a queued run: its runtime's dependencies.
    deps = replace(one.state.services.runtime.deps(), poll_interval=0.05,
                   client_options=world.deps().client_options)
    assert run_to_completion(run.id, deps=deps, backoff=0.01).status == "succeeded"
    # A route of `other` asks Constant Contact: its wait for the pace is counted there only.
    assert _scrape(other, f"/api/connections/{world.connection.id}/test", method="POST",
                   token=token).json()["ok"] is True

    seen, unseen = _scrape(one).text, _scrape(other).text
    finished = "segment_export_runs_finished_total"
    assert _value(seen, finished, status="succeeded", dry_run="false") == 1
    assert _value(unseen, finished, status="succeeded", dry_run="false") == 0
    assert _value(seen, "segment_export_contacts_total", outcome="sent") == 5
    assert _value(unseen, "segment_export_contacts_total", outcome="sent") == 0
    assert _value(seen, "segment_export_cc_requests_total", method="POST", endpoint=IMPORT,
                  status="201") == 1
    assert _value(unseen, "segment_export_cc_requests_total", method="POST",
                  endpoint=IMPORT) == 0
    waits = "segment_export_rate_limit_wait_seconds_count"
    assert _value(unseen, waits) == 1  # the account summary the connection test asked for
    assert _value(seen, waits) > 1  # the run's requests
