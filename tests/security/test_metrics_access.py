"""/metrics (web app and worker) needs the bearer token when one is set, and is served to
loopback clients only when none is."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from segment_export import metrics
from segment_export.app import create_app
from segment_export.config import Settings, load_settings

TOKEN = "metrics-token-0123456789abcdef"


def _scrape(settings: Settings, client: str, headers: dict[str, str] | None = None
            ) -> httpx.Response:
    app = create_app(settings)

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(client, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            return await http.get("/metrics", headers=headers or {})

    try:
        return asyncio.run(get())
    finally:
        app.state.services.runtime.engine.dispose()


def test_without_a_token_only_loopback_clients_are_served(settings: Settings) -> None:
    for client in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        answer = _scrape(settings, client)
        assert answer.status_code == 200, client
        assert "segment_export_queue_depth" in answer.text
    for client in ("10.0.0.5", "192.168.1.20", "2001:db8::1", "testclient"):
        answer = _scrape(settings, client)
        assert answer.status_code == 403, client
        assert "SEGMENT_EXPORT_METRICS_TOKEN" in answer.text
        assert "segment_export_" not in answer.text
    # A forwarded header claiming loopback changes nothing: the peer address decides.
    spoofed = _scrape(settings, "10.0.0.5", {"X-Forwarded-For": "127.0.0.1"})
    assert spoofed.status_code == 403
    # Through a reverse proxy on the same machine the peer is loopback, but the client is not.
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        proxied = _scrape(settings, "127.0.0.1", {header: "203.0.113.9"})
        assert proxied.status_code == 403, header


def test_with_a_token_every_client_needs_it(settings: Settings) -> None:
    guarded = settings.model_copy(update={"metrics_token": SecretStr(TOKEN)})
    for client in ("10.0.0.5", "127.0.0.1"):
        for headers in ({}, {"Authorization": "Bearer wrong"},
                        {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": TOKEN}):
            answer = _scrape(guarded, client, headers)
            assert answer.status_code == 401, (client, headers)
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert "segment_export_" not in answer.text
        ok = _scrape(guarded, client, {"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        assert "segment_export_queue_depth" in ok.text


@pytest.fixture
def worker_server() -> Iterator[int]:
    server = metrics.serve("127.0.0.1:0", metrics.Metrics(), token=SecretStr(TOKEN))
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def test_the_worker_metrics_server_applies_the_same_rule(worker_server: int) -> None:
    url = f"http://127.0.0.1:{worker_server}/metrics"
    refused = httpx.get(url, timeout=5)
    assert refused.status_code == 401
    assert "segment_export_" not in refused.text
    assert httpx.get(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
    ok = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert ok.status_code == 200
    assert "segment_export_queue_depth" in ok.text


def test_the_rule_itself() -> None:
    token = SecretStr(TOKEN)
    assert metrics.scrape_refusal(token=None, authorization=None, client_host="127.0.0.1") is None
    assert metrics.scrape_refusal(token=None, authorization=None, client_host=None).status == 403
    assert metrics.scrape_refusal(token=None, authorization=f"Bearer {TOKEN}",
                                  client_host="10.0.0.1").status == 403
    assert metrics.scrape_refusal(token=token, authorization=f"bearer  {TOKEN} ",
                                  client_host="10.0.0.1", proxied=True) is None
    assert metrics.scrape_refusal(token=None, authorization=None, client_host="::1",
                                  proxied=True).status == 403


def test_a_placeholder_token_is_refused(tmp_path: Path) -> None:
    from segment_export.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="METRICS_TOKEN holds a placeholder"):
        load_settings(data_dir=tmp_path, metrics_token="changeme")
