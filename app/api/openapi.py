"""The OpenAPI schema with every response the service gives, error codes included, in ErrorOut's shape.

FastAPI documents only the success response and a 422 in its own HTTPValidationError shape; the
service answers every error with ErrorOut. The common errors follow from each route's traits
(auth and role dependencies, path parameters, request body, multipart uploads, the services it
needs), so they are added here, centrally; what a router declares itself (``responses=``) wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from app.api.deps import current_key, get_services
from app.api.errors import iter_routes
from app.api.people import ErrorOut

_ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
_VALIDATION_REF = "#/components/schemas/HTTPValidationError"

# Every route that reads the database (all that use the services) can meet it away.
_DATABASE_503 = (
    "`database_unavailable`: the database cannot be reached; retry after Retry-After seconds "
    "(a write refused this way was not acknowledged), or `database_busy`: no database connection "
    "became free in time."
)

_RETRY_AFTER = {
    "description": "Seconds until the key may make its next request.",
    "schema": {"type": "integer", "minimum": 1},
}

# Errors that a route's traits cannot tell: (method, path) -> {status: description}.
_ROUTE_ERRORS: dict[tuple[str, str], dict[int, str]] = {
    ("post", "/v1/doors"): {409: "`door_exists`: another door has this name."},
    ("post", "/v1/doors/{door_id}/frames"): {
        401: "`unauthorized` or `key_expired` (the API key); signed requests: `signature_required` (the "
        "door has signing_required and the request is unsigned), `bad_signature` (malformed signing "
        "headers, no secret issued, or the HMAC does not match), `stale_request` (the timestamp is "
        "outside the clock window), `replayed_request` (the nonce was used already).",
        503: "`busy`: too many requests wait for face inference, or `starting`; retry shortly. "
        "`signing_unavailable`: the master key cannot be read. " + _DATABASE_503,
    },
    ("post", "/v1/doors/{door_id}/signing-secret"): {
        503: "`starting`, or `signing_unavailable`: the master key cannot be read or created. "
        + _DATABASE_503,
    },
    ("patch", "/v1/doors/{door_id}"): {409: "`door_exists`: another door has this name."},
    ("post", "/v1/keys"): {404: "`door_not_found`: the door_id names no door."},
    ("delete", "/v1/keys/{key_id}"): {409: "`own_key`: an admin key cannot revoke itself."},
    ("post", "/v1/people"): {409: "`external_id_exists`: another person has this external_id."},
    ("get", "/v1/events/{event_id}/snapshot"): {
        403: "`forbidden`: snapshots are for auditor and admin keys only (door and verifier keys get 403).",
        404: "`event_not_found`: the path names no access event; `snapshot_not_found`: the event kept no "
        "picture of that kind (no face found, snapshots off, kind=frame at a door without "
        "snapshot_full_frame), or it was purged (retention, or its granted person was deleted).",
    },
    ("get", "/v1/events/{event_id}/explain"): {
        403: "`forbidden`: explanations show faces: auditor and admin keys only.",
        404: "`event_not_found`: the path names no access event.",
        409: "`no_person`: the event names no person; `no_snapshot`: it kept no face snapshot (none taken, "
        "or purged); `no_reference_photo`: the person has no kept enrolment photo; `no_face` (or "
        "`not_an_image`): no face is found in the kept snapshot or in any kept photo.",
        503: "`busy`: too many requests wait for face inference, or `starting`; retry shortly. "
        + _DATABASE_503,
    },
    ("put", "/v1/events/{event_id}/label"): {
        404: "`event_not_found`: the path names no access event.",
        422: "`invalid_request` (wrong_person without true_person_id, or another label with one) or "
        "`person_not_found`: true_person_id names no person.",
    },
    ("get", "/v1/events/{event_id}/label"): {
        404: "`event_not_found`: the path names no access event; `label_not_found`: it is not labelled.",
    },
}


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield dep.call
        yield from _calls(dep)


def _common_errors(
    route: APIRoute, method: str, path_format: str, operation: dict[str, Any]
) -> dict[int, str]:
    calls = list(_calls(route.dependant))
    content = operation.get("requestBody", {}).get("content", {})
    multipart = "multipart/form-data" in content
    errors: dict[int, str] = {}
    if route.body_field is not None:
        errors[400] = "`bad_request`: the body cannot be parsed."
        errors[413] = "`payload_too_large`: the request body is over the service's limit."
    if current_key in calls:
        errors[401] = "`unauthorized`: no API key, or an unknown or revoked one; `key_expired`: it expired."
        errors[429] = "`rate_limited`: this key is over its request rate; retry after Retry-After seconds."
    if any(getattr(c, "__qualname__", "").startswith("require_role.") for c in calls):
        errors[403] = "`forbidden`: the key's role may not do this (or `wrong_door` for another door's key)."
    if route.dependant.path_params:
        errors[404] = "The resource the path names does not exist (`*_not_found`)."
    if operation.get("parameters") or route.body_field is not None:
        errors[422] = "`invalid_request`: the request does not validate (details.problems lists why)."
    if multipart:
        errors[413] = "`image_too_large` (or `payload_too_large` for the whole body)."
        errors[422] = "`not_an_image` or another image error, or `invalid_request`."
    if get_services in calls:
        errors[503] = f"`starting`: the service is still starting; retry shortly. {_DATABASE_503}"
        if multipart:
            errors[503] = (
                "`busy`: too many requests wait for face inference, or `starting`; retry shortly. "
                + _DATABASE_503
            )
    errors.update(_ROUTE_ERRORS.get((method, path_format), {}))
    return errors


def _replace_validation_refs(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("$ref") == _VALIDATION_REF:
            node["$ref"] = _ERROR_REF["$ref"]
        for value in node.values():
            _replace_validation_refs(value)
    elif isinstance(node, list):
        for value in node:
            _replace_validation_refs(value)


def _int64_bounds(node: Any) -> None:
    """Integers are 64-bit in the database: larger ones are refused with 422, so say so."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            node.setdefault("minimum", -(2**63))
            node.setdefault("maximum", 2**63 - 1)
        for value in node.values():
            _int64_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _int64_bounds(value)


def _form_fields(schema: dict[str, Any]) -> None:
    """A multipart field is absent or has a value: it cannot be null, and a required list cannot be
    empty. FastAPI documents an optional form field as anyOf [T, null]: keep T (it stays optional)."""
    components = schema.get("components", {}).get("schemas", {})
    for ops in schema["paths"].values():
        for operation in ops.values():
            form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data")
            ref = (form or {}).get("schema", {}).get("$ref", "")
            body = components.get(ref.rsplit("/", 1)[-1]) if ref else None
            required = set((body or {}).get("required", ()))
            for name, prop in (body or {}).get("properties", {}).items():
                if name in required and prop.get("type") == "array":
                    prop.setdefault("minItems", 1)  # an empty list is an absent field
                options = prop.get("anyOf")
                if options and {"type": "null"} in options:
                    kept = [o for o in options if o != {"type": "null"}]
                    del prop["anyOf"]
                    prop.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
                    if prop.get("default", 0) is None:
                        del prop["default"]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes, description=app.description)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "ErrorOut" not in components:
        error_schema = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(error_schema.pop("$defs", {}))
        components["ErrorOut"] = error_schema
    for route, path_format, methods in iter_routes(app):
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in sorted(methods):
            operation = schema["paths"].get(path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status, description in _common_errors(route, method.lower(), path_format, operation).items():
                declared = responses.get(str(status))
                if declared is None:
                    responses[str(status)] = {
                        "description": description,
                        "content": {"application/json": {"schema": dict(_ERROR_REF)}},
                    }
                else:
                    if not declared.get("content"):
                        declared["content"] = {"application/json": {"schema": dict(_ERROR_REF)}}
                    if status == 503 and get_services in _calls(route.dependant):
                        text = declared.get("description", "")
                        if "database_unavailable" not in text:
                            declared["description"] = f"{text} {_DATABASE_503}".strip()
            if "429" in responses:  # app/api/ratelimit.py
                responses["429"].setdefault("headers", {"Retry-After": _RETRY_AFTER})
    _replace_validation_refs(schema["paths"])
    _form_fields(schema)
    _int64_bounds(schema)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
