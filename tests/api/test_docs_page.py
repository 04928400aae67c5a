"""The API's documentation page works on a closed network: Swagger UI comes from the server."""

from __future__ import annotations

import re

from tests.api.harness import AppWorld


def test_the_docs_page_loads_swagger_ui_from_this_server(site: AppWorld) -> None:
    client = site.api(None)
    page = client.get("/api/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assets = [s for s in sources if s.endswith((".js", ".css"))]
    assert assets, page.text[:500]
    assert all(s.startswith("/api/docs/assets/") for s in assets), assets
    assert "cdn." not in page.text
    for asset in assets:
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        assert len(answer.content) > 10_000, asset  # the real bundle, not a placeholder
    assert '"/api/openapi.json"' in page.text or "'/api/openapi.json'" in page.text
