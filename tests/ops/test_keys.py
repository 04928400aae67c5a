"""Key rotation with SEGMENT_EXPORT_SECRET_KEY: new key first, re-encrypt, then drop the old one."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr
from sqlalchemy import select, update

from segment_export.config import Settings
from segment_export.db import make_engine, make_session_factory
from segment_export.db.models import Connection, User
from segment_export.definitions.connections import check_connection
from segment_export.errors import ConfigurationError
from segment_export.ops.keys import encrypted_tables, fingerprint, reencrypt, rotate_keys
from tests.ops.helpers import prepare
from tests.world import World


def _with_keys(world: World, *keys: bytes) -> Settings:
    changed = world.settings.model_copy(
        update={"secret_key": SecretStr(",".join(k.decode() for k in keys))})
    changed.__dict__.pop("encryption_keys", None)  # model_copy keeps the cached key list
    assert changed.encryption_keys == list(keys)
    return changed


def _secrets(world: World) -> list[bytes]:
    (spec,) = encrypted_tables()
    with world.engine.connect() as conn:
        rows = conn.execute(select(spec.clause())).mappings().all()
    return [bytes(r[c]) for r in rows for c in spec.columns if r[c] is not None]


def test_environment_keys_rotate_without_losing_a_connection(world: World) -> None:
    (old,) = world.settings.encryption_keys
    export = prepare(world, 50)
    assert world.run(export).status == "succeeded"
    with pytest.raises(ConfigurationError, match="one key") as caught:
        rotate_keys(settings=world.settings, engine=world.engine)
    assert "generate-key" in caught.value.hint

    new = Fernet.generate_key()
    staged = _with_keys(world, new, old)  # what every process runs with during the rotation
    engine = make_engine(staged)
    try:
        result = rotate_keys(settings=staged, engine=engine)
        assert result.source == "environment"
        assert not result.generated
        assert result.reencrypted.values == len(_secrets(world)) >= 4
        assert result.instructions is not None
        assert "--drop-old" in result.instructions
        for token in _secrets(world):
            Fernet(new).decrypt(token)
            with pytest.raises(InvalidToken):
                Fernet(old).decrypt(token)
        again = rotate_keys(settings=staged, engine=engine, drop_old=True)
        assert again.reencrypted.values == 0
        assert again.instructions is not None
        assert fingerprint(new) in again.instructions
    finally:
        engine.dispose()

    final = _with_keys(world, new)
    engine = make_engine(final)
    try:
        world.control.expire_tokens()  # the check must refresh: read and write under the new key
        with make_session_factory(engine)() as session:
            conn = session.get(Connection, world.connection.id)
            admin = session.get(User, world.admin.id)
            assert conn is not None
            assert admin is not None
            assert check_connection(session, actor=admin, connection=conn, settings=final,
                                    engine=engine).ok
        assert any(r.path.endswith("/token") for r in world.control.requests())
        for token in _secrets(world):
            Fernet(new).decrypt(token)
    finally:
        engine.dispose()


def test_a_secret_no_key_opens_stops_the_rotation_and_is_reported(world: World) -> None:
    (old,) = world.settings.encryption_keys
    stranger = Fernet(Fernet.generate_key()).encrypt(b"from another installation")
    with world.engine.begin() as conn:
        (spec,) = encrypted_tables()
        table = spec.clause()
        conn.execute(update(table).where(table.c.id == world.connection.id)
                     .values(pkce_verifier=stranger))
    new = Fernet.generate_key()
    staged = _with_keys(world, new, old)
    engine = make_engine(staged)
    try:
        with pytest.raises(ConfigurationError, match="1 stored secret") as caught:
            rotate_keys(settings=staged, engine=engine)
        assert caught.value.context["unreadable"] == [
            {"table": "connections", "row": world.connection.id, "column": "pkce_verifier"}]
        # Everything readable was still moved to the new key; the stranger was left as it was.
        assert stranger in _secrets(world)
        assert reencrypt(engine, [new, old]).values == 0
    finally:
        engine.dispose()
