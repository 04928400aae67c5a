"""Constant Contact's official contract, read from ../shared at test time, as a validator of
recorded HTTP exchanges (never copied into the project)."""

from __future__ import annotations

import copy
import re
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema_rs
import orjson
import yaml  # type: ignore[import-untyped]

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared/reference/constant-contact-v3"
SWAGGER = REFERENCE / "appconnect-v3-swagger-2.0-build-3.0.178.yaml"
OPENAPI3 = REFERENCE / "constant-contact-api-v3-openapi-3.0.0-build-3.0.161.yaml"

# Scopes the scopes guide documents but the contract's securityDefinitions leave out.
EXTRA_SCOPES = frozenset({"offline_access"})


def _load(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        data: dict[str, Any] = yaml.load(handle, Loader=yaml.CSafeLoader)
    return data


def tolerate_known_defects(definitions: dict[str, Any]) -> dict[str, Any]:
    """The contract's definitions with the defects listed in the reference README mended.

    Only what the emulator's traffic can meet is mended; each entry says why.
    """
    mended = copy.deepcopy(definitions)
    # README: ListActivityRemoveContacts declares maxItems: 0 on list_ids, source.contact_ids,
    # source.list_ids and source.tag_ids; the prose says up to 50 lists and 500 contacts.
    remove = mended["ListActivityRemoveContacts"]["properties"]
    remove["list_ids"]["maxItems"] = 50
    remove["source"]["properties"]["contact_ids"]["maxItems"] = 500
    remove["source"]["properties"]["list_ids"]["maxItems"] = 50
    remove["source"]["properties"]["tag_ids"]["maxItems"] = 50
    return mended


class Contract:
    """Operations and schemas of the Swagger 2.0 contract, plus the OAuth schemas of the
    OpenAPI 3 copy."""

    def __init__(self, swagger: dict[str, Any], openapi3: dict[str, Any] | None) -> None:
        self.swagger = swagger
        self.base_path: str = swagger["basePath"]
        self.definitions = tolerate_known_defects(swagger["definitions"])
        schemas = (openapi3 or {}).get("components", {}).get("schemas", {})
        # Only these two: elsewhere the file's examples hold YAML timestamps, not JSON values.
        self.oauth_schemas = {k: schemas[k] for k in ("AccessTokenResponse", "OAuthError")
                              if k in schemas}
        self._validators: dict[bytes, jsonschema_rs.Validator] = {}
        # Literal paths before templated ones: /activities/contacts_json_import is not an id.
        templates = sorted(swagger["paths"], key=lambda p: (p.count("{"), p))
        self._routes = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", t) + "$"), t) for t in templates
        ]

    @classmethod
    def load(cls) -> Contract:
        return cls(_load(SWAGGER), _load(OPENAPI3) if OPENAPI3.exists() else None)

    @cached_property
    def oauth(self) -> dict[str, Any]:
        flow: dict[str, Any] = self.swagger["securityDefinitions"]["oauth2_access_code"]
        return flow

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        """The path template and operation a request to ``path`` (under /v3) is."""
        relative = path.removeprefix(self.base_path)
        for pattern, template in self._routes:
            if pattern.match(relative):
                operation = self.swagger["paths"][template].get(method.lower())
                if operation is not None:
                    return template, operation
        return None

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """``schema``, or the definition it refers to."""
        ref = schema.get("$ref", "")
        if ref.startswith("#/definitions/"):
            resolved: dict[str, Any] = self.definitions[ref.removeprefix("#/definitions/")]
            return resolved
        return schema

    def validate(self, schema: dict[str, Any], instance: Any, *, oauth: bool = False) -> list[str]:
        """Problems of ``instance`` against ``schema`` (refs resolve in the contract)."""
        if oauth:
            root = {"components": {"schemas": self.oauth_schemas}, "allOf": [schema]}
        else:
            root = {"definitions": self.definitions, "allOf": [schema]}
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS) + (b"3" if oauth else b"2")
        validator = self._validators.get(key)
        if validator is None:
            validator = jsonschema_rs.Draft4Validator(root)
            self._validators[key] = validator
        return [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(instance)]

    def check_query(self, operation: dict[str, Any], query: dict[str, str]) -> list[str]:
        declared = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "query"}
        problems = []
        for name, value in query.items():
            if name == "cursor":
                # Comes in _links.next.href (PagingLinks); no operation declares it.
                continue
            param = declared.get(name)
            if param is None:
                problems.append(f"query parameter {name!r} is not in the contract")
                continue
            values = value.split(",") if param.get("format") == "csv" else [value]
            for item in values:
                if "enum" in param and item not in param["enum"]:
                    problems.append(f"{name}={item!r} is not one of {param['enum']}")
                if param.get("type") == "integer":
                    number = int(item)
                    if not param.get("minimum", number) <= number <= param.get("maximum", number):
                        problems.append(f"{name}={number} is out of range")
                if param.get("type") == "boolean" and item not in ("true", "false"):
                    problems.append(f"{name}={item!r} is not a boolean")
        return problems

    def check_exchange(self, response: httpx.Response) -> list[str]:
        """Everything wrong with one recorded API request and its response."""
        request = response.request
        where = f"{request.method} {request.url.path}"
        found = self.operation(request.method, request.url.path)
        if found is None:
            return [f"{where}: no such operation in the contract"]
        template, operation = found
        problems = self.check_query(operation, dict(request.url.params))
        body_param = next(
            (p for p in operation.get("parameters", []) if p["in"] == "body"), None
        )
        if body_param is not None and request.content:
            problems += self.validate(body_param["schema"], orjson.loads(request.content))
        status = response.status_code
        declared = operation["responses"].get(str(status))
        if declared is None and status != 429:
            # 429 is tolerated everywhere: the rate limits apply to every call (rate-limit
            # guide, FACTS.md §3) though the contract lists 429 only on bulk endpoints.
            problems.append(f"status {status} is not a documented response")
        schema = (declared or {}).get("schema")
        media_type = response.headers.get("content-type", "").split(";")[0]
        if schema is not None:
            if self.resolve(schema).get("type") == "string":  # GET /contact_exports/{id}: CSV
                problems += self.validate(schema, response.text)
                if media_type not in operation.get("produces", []):
                    problems.append(f"content type {media_type} is not produced")
            else:
                problems += self.validate(schema, response.json())
        elif status >= 400:
            error_schema: dict[str, Any] = {"$ref": "#/definitions/APIErrorSchema"}
            if status == 401:
                error_schema = {"$ref": "#/definitions/AuthorizationErrorSchema"}
            elif status == 429:
                # FACTS.md §3: the rate-limit guide shows 429 bodies as single objects.
                error_schema = self.definitions["APIErrorSchema"]["items"]
            problems += self.validate(error_schema, response.json())
        return [f"{where} ({template}) -> {status}: {p}" for p in problems]

    def check_oauth(self, response: httpx.Response) -> list[str]:
        """One recorded authorization-server exchange against securityDefinitions and the
        OpenAPI 3 copy's AccessTokenResponse / OAuthError."""
        request = response.request
        path = request.url.path
        problems = []
        if path.endswith("/authorize") and request.method == "GET":
            if path != urlsplit(self.oauth["authorizationUrl"]).path:
                problems.append(f"authorize path {path} differs from the contract")
            scopes = set(request.url.params.get("scope", "").split())
            unknown = scopes - set(self.oauth["scopes"]) - EXTRA_SCOPES
            if unknown:
                problems.append(f"scopes not in the contract: {sorted(unknown)}")
        elif path.endswith("/token"):
            if path != urlsplit(self.oauth["tokenUrl"]).path:
                problems.append(f"token path {path} differs from the contract")
            if self.oauth_schemas:
                name = "AccessTokenResponse" if response.status_code == 200 else "OAuthError"
                problems += self.validate(
                    {"$ref": f"#/components/schemas/{name}"}, response.json(), oauth=True
                )
        return [f"{request.method} {path} -> {response.status_code}: {p}" for p in problems]
