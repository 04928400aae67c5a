"""After real runs, no token or client secret is readable anywhere in the data directory."""

from __future__ import annotations

from segment_export.db.models import Connection
from tests.world import CLIENT_SECRET, World


def test_no_plaintext_secret_in_the_data_directory(world: World) -> None:
    world.load_profiles([{"customer_id": 1, "email": "a@example.com", "first_name": "A",
                          "last_name": "B", "country": "DE"}])
    world.run(world.export("secrets", [world.segment("all", "country = 'DE'")]))
    with world.sessions() as session:
        conn = session.get(Connection, world.connection.id)
        assert conn is not None
        secrets = [conn.access_token, conn.refresh_token, conn.client_secret, CLIENT_SECRET]
    assert all(secrets)
    world.store.close()
    world.engine.dispose()  # fold the SQLite WAL into the file
    files = [p for p in world.settings.data_dir.rglob("*") if p.is_file()]
    assert any(p.name == "state.db" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret is not None
            assert secret.encode() not in data, f"a secret is readable in {path.name}"
