"""schemathesis against the OpenAPI document, on a real uvicorn server with a real token
per role: no 5xx, every response matches its schema, status and content type.

One schemathesis run covers every operation, each called with the token of a role its
``x-pdl-roles`` allows (per-operation headers in a generated config file). Examples are
bounded (``MAX_EXAMPLES`` per operation) to keep the run near a minute.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apikit import Live, sample_server

from ledger.principals import Role

MAX_EXAMPLES = int(os.environ.get("PDL_FUZZ_EXAMPLES", "5"))
#: Paged lists refuse a cursor they did not give out (400); /scope refuses an incomplete
#: window (400). Both are schema-valid requests the API rightly turns away.
#: A principal's sources are for publishers only (422 otherwise).
CROSS_CHECKED = {name: ["2xx", 400, 401, 403, 404] for name in (
    "GET /disclosures", "GET /findings", "GET /access-log", "GET /principals", "GET /tokens",
    "POST /log/unseal", "GET /scope", "GET /incidents")} | {"POST /principals": ["2xx", 401, 403, 404, 409, 422]} | {
    # A body of the documented media types is not yet an event of the catalogue (each
    # type's own schema is at /schemas/{event_type}): 422 names line and field; an event
    # of a source not registered to the publisher is 403.
    "POST /events": ["2xx", 401, 403, 413, 422]}
#: The role each operation is fuzzed with: the first its x-pdl-roles allows, in this order.
PREFERENCE = (Role.PRIVACY_OFFICER, Role.COMPLIANCE, Role.RESPONDER, Role.ADMIN,
              Role.PUBLISHER)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with sample_server(tmp_path_factory.mktemp("fuzz")) as server:
        yield server


def _config(live: Live, path: Path) -> list[str]:
    spec = httpx.get(f"{live.url}/openapi.json").json()
    # Values seen in answers are not fed back into requests: they would let the run
    # disable the test principals or revoke their tokens half-way through.
    lines = ["[generation]", 'database = "none"', "",
             *(line for phase in ("examples", "coverage", "fuzzing")
               for line in (f"[phases.{phase}]", "extra-data-sources = { responses = false }",
                            ""))]
    names = []
    for route, operations in spec["paths"].items():
        for method, operation in operations.items():
            name = f"{method.upper()} {route}"
            names.append(name)
            allowed = [Role(r) for r in operation.get("x-pdl-roles", [])]
            block = []
            if allowed:
                role = next(r for r in PREFERENCE if r in allowed)
                block.append(f'headers = {{ Authorization = "Bearer {live.tokens[role]}" }}')
            if name in CROSS_CHECKED:
                statuses = ", ".join(f'"{x}"' if isinstance(x, str) else str(x)
                                     for x in CROSS_CHECKED[name])
                block.append(f"checks.positive_data_acceptance.expected-statuses = [{statuses}]")
            if block:
                lines += ["[[operations]]", f'include-name = "{name}"', *block, ""]
    path.write_text("\n".join(lines))
    return names


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(
        live: Live, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    names = _config(live, config)
    assert len(names) >= 20
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
         f"{live.url}/openapi.json", "--max-examples", str(MAX_EXAMPLES), "--seed", "13",
         "--checks", "all", "--exclude-checks",
         # stateful checks that need OpenAPI links (none here)
         "use_after_free,ensure_resource_availability",
         "--phases", "examples,coverage,fuzzing", "--no-color", "--workers", "1",
         "--request-timeout", "30", "--suppress-health-check", "all"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False)
    elapsed = time.monotonic() - started
    tail = result.stdout[-8000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    assert "5xx" not in result.stdout.split("SUMMARY")[-1], tail
    assert elapsed < 240, f"schemathesis took {elapsed:.0f} s"
    # the run's own principals and tokens still work: nothing locked the test out
    for role, token in live.tokens.items():
        assert live.principals.resolve(token).role is role
    with live.client(Role.ADMIN) as admin:
        metrics = admin.get("/metrics").text
        assert admin.get("/whoami").status_code == 200
    assert 'status="500"' not in metrics
