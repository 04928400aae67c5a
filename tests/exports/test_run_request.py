"""One typed input for asking for a run: `RunRequest` is the API's request body, and what the
run form and `exports run` build; all three reach `request_run` with it (over real HTTP to the
app, and the CLI over the same state store)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from segment_export.api.routes import exports as api_exports
from segment_export.cli import cli
from segment_export.cli import exports as cli_exports
from segment_export.db.models import Export, Run
from segment_export.exports import runs
from segment_export.exports.runs import RunRequest
from segment_export.web.pages import exports as web_exports
from tests.api.harness import AppWorld, app_world, make_settings

RUN_PATH = "/api/exports/{export_id}/runs"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppWorld]:
    data_dir: Path = tmp_path_factory.mktemp("run-request")
    with app_world(make_settings(data_dir), profiles=20) as world:
        yield world


def test_an_unknown_field_is_refused_by_name() -> None:
    with pytest.raises(ValidationError) as refused:
        RunRequest(dry_run=True, full_sync=True)  # type: ignore[call-arg]  # full_resync
    assert [(e["loc"], e["type"]) for e in refused.value.errors()] == [
        (("full_sync",), "extra_forbidden")]
    assert "full_sync" in str(refused.value)


def test_a_value_that_is_no_boolean_is_refused_by_name() -> None:
    with pytest.raises(ValidationError) as refused:
        RunRequest.model_validate({"dry_run": "perhaps"})
    assert [e["loc"] for e in refused.value.errors()] == [("dry_run",)]


def test_the_api_body_is_the_run_request(site: AppWorld) -> None:
    document = site.api(None).get("/api/openapi.json").json()
    body = document["paths"][RUN_PATH]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/RunRequest"}
    assert issubclass(api_exports.RunRequest, RunRequest)
    # The same fields, defaults and descriptions; only the API ignores unknown fields, as it
    # did before the model was shared.
    expected = RunRequest.model_json_schema()
    assert expected.pop("additionalProperties") is False
    assert document["components"]["schemas"]["RunRequest"] == expected


def test_the_api_still_ignores_an_unknown_field(site: AppWorld) -> None:
    export = site.export()
    answer = site.api("admin").post(RUN_PATH.format(export_id=export.id),
                                    json={"dry_run": True, "colour": "blue"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["dry_run"] is True


def _api(site: AppWorld, export: Export, request: RunRequest) -> str:
    answer = site.api("admin").post(RUN_PATH.format(export_id=export.id),
                                    json=request.model_dump())
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def _web(site: AppWorld, export: Export, request: RunRequest) -> str:
    form = {name: "true" for name, value in request.model_dump().items() if value}
    answer = site.browser("admin").post(f"/data/exports/{export.id}/run", form)
    assert answer.status_code == 303, answer.text
    found = re.fullmatch(r"/runs/([0-9a-f-]+)", answer.headers["location"].split("?")[0])
    assert found is not None, answer.headers["location"]
    return found.group(1)


def _cli(site: AppWorld, export: Export, request: RunRequest) -> str:
    flags = (["--dry-run"] if request.dry_run else []) + (["--full"] if request.full_resync
                                                          else [])
    secret = site.settings.secret_key
    assert secret is not None
    result = CliRunner().invoke(cli, ["--as-user", "admin", "exports", "run", export.name,
                                      *flags, "--no-wait"], env={
        "SEGMENT_EXPORT_DATA_DIR": str(site.settings.data_dir),
        "SEGMENT_EXPORT_SECRET_KEY": secret.get_secret_value(), "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    found = re.search(r"Queued run (\S+);", result.output)
    assert found is not None, result.output
    return found.group(1)


@pytest.mark.parametrize("request_", [
    RunRequest(dry_run=True), RunRequest(full_resync=True),
    RunRequest(dry_run=True, full_resync=True)], ids=["dry", "full", "dry-full"])
def test_every_front_end_reaches_request_run_with_the_model(
    site: AppWorld, monkeypatch: pytest.MonkeyPatch, request_: RunRequest,
) -> None:
    asked: list[tuple[str, Any]] = []
    real = runs.request_run

    def recording(front_end: str) -> Any:
        def request_run(*args: Any, **kwargs: Any) -> Run:
            asked.append((front_end, kwargs.get("request")))
            return real(*args, **kwargs)
        return request_run

    for name, module in (("api", api_exports), ("web", web_exports), ("cli", cli_exports)):
        monkeypatch.setattr(module, "request_run", recording(name))

    run_ids = {name: ask(site, site.export(), request_)
               for name, ask in (("api", _api), ("web", _web), ("cli", _cli))}

    assert [name for name, _ in asked] == ["api", "web", "cli"]
    for _, model in asked:
        assert isinstance(model, RunRequest)
        assert model.model_dump() == request_.model_dump()
    with site.runtime.sessions() as db:
        for name, run_id in run_ids.items():
            run = db.get(Run, run_id)
            assert run is not None, name
            assert (run.dry_run, run.full_resync, run.trigger) == (
                request_.dry_run, request_.full_resync, "manual"), name
            assert run.requested_by_id == site.users["admin"].id, name
