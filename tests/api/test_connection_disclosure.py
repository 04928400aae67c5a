"""A contributor refused a connection that is not shared with them learns nothing about it,
not even its name (found by the role fuzz pass, tests/api/test_fuzz.py)."""

from __future__ import annotations

from tests.api.harness import LIST_ID, AppWorld


def test_refusing_an_unshared_connection_does_not_name_it(shared_site: AppWorld) -> None:
    private = shared_site.connection(shared=False)
    segment = shared_site.segment()
    contributor = shared_site.api("contributor")

    lists = contributor.get(f"/api/connections/{private.id}/lists")
    export = contributor.post("/api/exports", json={
        "name": "Sneaky", "connection_id": private.id, "list_id": LIST_ID,
        "mapping": {"email": "email"}, "segment_ids": [segment.id]})

    for refused in (lists, export):
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "permission_denied"
        assert private.display_name not in refused.text
        assert refused.json()["detail"] == "'contributor' may not use this connection"
