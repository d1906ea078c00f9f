"""The published OpenAPI schema against the running service: schemathesis with every check, once
per role (admin, auditor, door), a bounded number of examples per operation, loopback only.

FACEGATE_SCHEMATHESIS_EXAMPLES raises the bound for a run at length.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.http_server import ServiceProcess, bearer

pytest.importorskip("schemathesis")

NO_RATE_LIMITS = {
    "FACEGATE_RATE_LIMIT_PER_S": json.dumps({"admin": 0, "door": 0, "auditor": 0, "verifier": 0})
}
EXAMPLES = int(os.environ.get("FACEGATE_SCHEMATHESIS_EXAMPLES", "5"))

# Every check runs (schemathesis 4 enables them all unless configured; `--checks all` on the command
# line would override the per-operation entries below). Only these are relaxed, and why:
CONFIG = """
# Dependency analysis links KeyOut.door_id (null for non-door keys) into /v1/doors/{door_id}: the
# stateful phase then sends /v1/doors/None, a request the schema never allows.
[phases.stateful.checks.positive_data_acceptance]
enabled = false

# Schema-valid bytes are not a photo: an image field takes any binary, and the service answers
# 422 not_an_image, as documented. No schema can say "a JPEG with a face".
[[operations]]
include-path-regex = "/(faces|frames|verify)$"
checks.positive_data_acceptance.enabled = false

# The cursor is opaque (it comes from next_cursor): an arbitrary string is refused with 422.
[[operations]]
include-path = "/v1/events"
checks.positive_data_acceptance.enabled = false
"""


@pytest.fixture(scope="module")
def keys(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, dict[str, str]]]:
    # Rate limits off: a fuzzer past a key's rate would test little but the 429 (which the schema
    # documents for every authenticated operation: test_rate_limit_documented checks that).
    svc = ServiceProcess(tmp_path_factory.mktemp("schema"), model_dir, **NO_RATE_LIMITS)
    assert svc.cli("db", "upgrade").returncode == 0
    created = svc.cli("keys", "create", "--role", "admin", "--name", "schema-admin")
    assert created.returncode == 0, created.stderr
    admin = created.stdout.strip().splitlines()[-1]
    with svc, httpx.Client(base_url=svc.url, headers=bearer(admin), timeout=30) as c:
        door = c.post("/v1/doors", json={"name": "Schema door", "liveness_required": False}).json()
        door_key = c.post("/v1/keys", json={"role": "door", "name": "cam", "door_id": door["id"]}).json()
        auditor = c.post("/v1/keys", json={"role": "auditor", "name": "security"}).json()
        yield svc, {"admin": admin, "auditor": auditor["key"], "door": door_key["key"]}


@pytest.mark.parametrize("role", ["admin", "auditor", "door"])
def test_schemathesis_all_checks(
    keys: tuple[ServiceProcess, dict[str, str]], role: str, tmp_path: Path
) -> None:
    svc, secrets = keys
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    cli = Path(sys.executable).with_name("schemathesis")
    run = subprocess.run(
        [
            str(cli),
            "--config-file",
            str(config),
            "run",
            f"{svc.url}/openapi.json",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            "13",
            "--workers",
            "1",
            "--no-color",
            "--header",
            f"Authorization: Bearer {secrets[role]}",
        ],
        capture_output=True,
        text=True,
        timeout=600 if EXAMPLES <= 20 else 40 * EXAMPLES,  # a run at length takes its time
        check=False,
        cwd=tmp_path,  # its caches (.hypothesis, .schemathesis) stay out of the repository
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    # The run really exercised the API: every operation, with cases that all passed.
    operations = re.search(r"Tested: (\d+)", run.stdout)
    cases = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert operations is not None and cases is not None, run.stdout[-3000:]
    assert int(operations.group(1)) == len(svc_operations(svc))
    assert int(cases.group(1)) == int(cases.group(2)) >= int(operations.group(1))
    print(f"{role}: {operations.group(1)} operations, {cases.group(1)} cases, 0 failures")


def svc_operations(svc: ServiceProcess) -> list[tuple[str, str]]:
    schema = httpx.get(f"{svc.url}/openapi.json", timeout=30).json()
    return [(method, path) for path, ops in schema["paths"].items() for method in ops]


def test_rate_limit_documented(keys: tuple[ServiceProcess, dict[str, str]]) -> None:
    """The fuzzers run without rate limits: the 429 they cannot meet is documented everywhere."""
    svc, _ = keys
    schema = httpx.get(f"{svc.url}/openapi.json", timeout=30).json()
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            if path.startswith("/v1/"):
                assert "429" in op["responses"], (method, path)
                assert op["responses"]["429"]["content"]["application/json"]["schema"]["$ref"].endswith(
                    "/ErrorOut"
                )


def test_max_length_is_on_the_string_as_sent() -> None:
    """A request model strips whitespace, but the schema's maxLength counts the string as sent:
    one space too many is refused, as schemathesis expects (it found POST /v1/doors accepting it)."""
    import pydantic

    from app.api import schemas

    checked = 0
    for model in [m for m in vars(schemas).values() if isinstance(m, type) and issubclass(m, schemas.Strict)]:
        for name, info in model.model_fields.items():
            limits = [m.max_length for m in info.metadata if getattr(m, "max_length", None) is not None]
            if not limits or info.annotation not in (str, str | None):
                continue
            with pytest.raises(pydantic.ValidationError, match=f"{name}: at most"):
                model.model_validate({name: " " + "a" * min(limits)})
            checked += 1
    assert checked >= 2
    door = schemas.DoorIn.model_validate({"name": " Lobby "})
    assert door.name == "Lobby"  # whitespace is still stripped within the limit


def test_whitespace_only_is_documented_as_refused() -> None:
    """A name of only whitespace is stripped to "" and refused; the schema's pattern says so, for
    exactly the characters the stripping removes."""
    import pydantic

    from app.api import schemas

    schema = schemas.DoorIn.model_json_schema()["properties"]["name"]
    pattern = re.compile(schema["pattern"])
    for cp in [*range(0x3100), 0xFEFF]:
        if 0xD800 <= cp < 0xE000:
            continue
        try:
            schemas.DoorIn.model_validate({"name": chr(cp)})
            accepted = True
        except pydantic.ValidationError:
            accepted = False
        assert accepted == bool(pattern.search(chr(cp))), hex(cp)
    person = schemas.PersonIn.model_json_schema()["properties"]["external_id"]["anyOf"][0]
    assert person["pattern"] == schema["pattern"]
