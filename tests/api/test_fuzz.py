"""The REST API fuzzed from its own OpenAPI document (schemathesis): never a server error."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from segment_export.db import make_engine, upgrade_database
from tests.api.harness import AppWorld, app_world, make_settings
from tests.services import postgres_schema_url

EXAMPLES = 10


@pytest.fixture(scope="module")
def fuzz_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppWorld]:
    """The app over PostgreSQL: stricter than SQLite (lengths, NUL characters, integer sizes),
    so what it accepts SQLite accepts too."""
    config = make_settings(tmp_path_factory.mktemp("fuzz"))
    with postgres_schema_url() as url:
        engine = make_engine(config, url=url)
        upgrade_database(engine)
        with app_world(config, engine=engine) as world:
            # Objects for generated requests to meet: a connection, a segment, an export, a run.
            world.run(world.export(connection=world.connection()))
            yield world
        engine.dispose()


def _fuzz(operation: schemathesis.APIOperation, mode: GenerationMode, token: str,
          statuses: Counter[int]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        response = case.call_and_validate(headers={"Authorization": f"Bearer {token}"},
                                          checks=[not_a_server_error])
        statuses[response.status_code] += 1

    try:
        check()
    except Unsatisfiable:
        # An operation without parameters or body has no invalid request to make.
        if mode != GenerationMode.NEGATIVE:
            raise


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
def test_no_server_errors(fuzz_site: AppWorld, mode: GenerationMode) -> None:
    """Every operation, with data its schema allows and with data it forbids."""
    schema = schemathesis.openapi.from_url(fuzz_site.url + "/api/openapi.json")
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    count = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        count += 1
        try:
            _fuzz(operation, mode, fuzz_site.tokens["admin"], statuses)
        except Exception as exc:
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert count >= 45
    assert not failures, "\n\n".join(failures)
    if mode == GenerationMode.POSITIVE:
        # The token was accepted and requests reached the routes, not only the door.
        assert statuses[401] == 0, statuses
        assert sum(n for status, n in statuses.items() if status < 300) >= count, statuses
    else:
        # Invalid requests include invalid credentials (the document declares the scheme).
        assert statuses[401] > 0, statuses
