"""The OpenAPI schema documents every error in ErrorOut's shape, and 405 names the allowed methods."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("openapi"))).openapi()


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, ops in schema["paths"].items() for m, op in ops.items()]


def test_no_fastapi_validation_shape_and_no_500(schema: dict[str, Any]) -> None:
    text = json.dumps(schema)
    assert "HTTPValidationError" not in text
    for method, path, op in _operations(schema):
        assert "500" not in op["responses"], (method, path)
        if "422" in op["responses"]:
            ref = op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorOut"), (method, path)


def test_common_errors_follow_the_route(schema: dict[str, Any]) -> None:
    for method, path, op in _operations(schema):
        codes = set(op["responses"])
        authenticated = path.startswith("/v1/")
        assert ("401" in codes) == authenticated, (method, path)
        assert ("403" in codes) == authenticated, (method, path)
        if "{" in path:
            assert "404" in codes, (method, path)
        body = op.get("requestBody", {}).get("content", {})
        if "multipart/form-data" in body:
            assert {"413", "422", "503"} <= codes, (method, path)
            assert "busy" in op["responses"]["503"]["description"], (method, path)
        for code, response in op["responses"].items():
            if code[0] in "45" and path.startswith("/v1/"):
                assert response["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    # A router's own description stays (the enrol endpoint names its refusals).
    enrol = schema["paths"]["/v1/people/{person_id}/faces"]["post"]["responses"]
    assert "duplicate_identity" in enrol["422"]["description"]


def test_content_types_match_what_is_served(schema: dict[str, Any]) -> None:
    events = schema["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]
    assert set(events) == {"application/json", "text/csv"}
    metrics = schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(metrics) == {"text/plain"}
    # A multipart field cannot be null: optional form fields are documented without it.
    body = schema["components"]["schemas"]["Body_verify_v1_verify_post"]["properties"]
    assert body["source_face"]["type"] == "integer"


def test_405_carries_allow_with_every_method_of_the_path(tmp_path: Path) -> None:
    client = TestClient(create_app(Settings(data_dir=tmp_path)))
    r = client.put("/v1/people")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST"  # two routes share the path
    assert r.json()["error"]["code"] == "method_not_allowed"
    assert r.json()["error"]["request_id"] == r.headers["x-request-id"]
    assert client.post("/v1/people/1").headers["allow"] == "DELETE, GET"
