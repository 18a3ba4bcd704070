"""docker-compose.yml is valid, pins the same Kafka as scripts/kafka-dev, and refuses to start
without its secrets.

Validated with the `docker-compose` binary (Debian's 1.29.2 works with no Docker engine):
`docker-compose config` resolves the file and fails on unknown options and on unset
`${VAR:?message}` variables.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
KAFKA_VERSION = (REPO / "scripts" / "kafka-version").read_text().strip()
SECRETS = ("LEDGER_MASTER_KEY", "LEDGER_POSTGRES_PASSWORD")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DOCKER_COMPOSE = shutil.which("docker-compose")

if DOCKER_COMPOSE is None and not IN_CI:
    pytest.skip(
        "install docker-compose (apt-get install docker-compose) to run", allow_module_level=True
    )


@pytest.fixture(scope="module")
def docker_compose() -> str:
    if DOCKER_COMPOSE is None:  # only reached on CI, where a missing tool is a failure
        pytest.fail("docker-compose is missing on CI: run scripts/ci-deps before the tests")
    return DOCKER_COMPOSE


def compose_config(
    docker_compose: str, tmp_path: Path, **secrets: str
) -> subprocess.CompletedProcess[str]:
    """Run `docker-compose config` with exactly the given secrets in the environment."""
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env.update(secrets)
    # An empty env file, so that a developer's .env cannot supply what the test leaves out.
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    return subprocess.run(
        [docker_compose, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config"],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def resolved(docker_compose: str, tmp_path: Path) -> dict[str, Any]:
    result = compose_config(
        docker_compose,
        tmp_path,
        LEDGER_MASTER_KEY="dGVzdC1rZXktbm90LWEtc2VjcmV0LTMyLWJ5dGVzISE=",
        LEDGER_POSTGRES_PASSWORD="test-password",
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_kafka_image_is_the_pinned_version(resolved: dict[str, Any]) -> None:
    # scripts/kafka-dev runs this same version from Maven jars; the two must not drift.
    assert resolved["services"]["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"


def test_dependencies_wait_for_health(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    with_deps = {name: s["depends_on"] for name, s in services.items() if "depends_on" in s}
    assert {"consumers", "api"} <= with_deps.keys()
    for name, deps in with_deps.items():
        for dep, spec in deps.items():
            if spec.get("condition") == "service_completed_successfully":
                # only a one-shot setup step may be waited for to finish
                assert services[dep].get("restart") == "no", f"{name} -> {dep}: {spec}"
                continue
            assert spec.get("condition") == "service_healthy", f"{name} -> {dep}: {spec}"


def test_the_example_publisher_posts_to_the_api_with_a_publisher_token(
        resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    publisher = services["example-publisher"]
    assert publisher["environment"]["PDL_URL"] == "http://api:8080"
    assert publisher["environment"]["PDL_SOURCE"] == "svc/example-shop"
    mounts = [v if isinstance(v, str) else f"{v.get('source')}:{v.get('target')}"
              for v in publisher["volumes"]]
    assert any(m.split(":")[0].endswith("examples/go-publisher") for m in mounts), mounts
    setup = " ".join(services["publisher-setup"]["command"])
    assert "--role publisher --source svc/example-shop" in setup
    assert "umask 077" in setup  # the token file is private


def test_stateful_services_have_healthchecks(resolved: dict[str, Any]) -> None:
    for name in ("kafka", "postgres", "consumers"):
        test = resolved["services"][name].get("healthcheck", {}).get("test")
        assert test, f"{name} has no healthcheck"


def test_consumers_talk_to_the_in_network_broker(resolved: dict[str, Any]) -> None:
    env = resolved["services"]["consumers"]["environment"]
    assert env["LEDGER_BACKEND"] == "kafka"
    assert env["LEDGER_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["LEDGER_MASTER_KEY"] == "dGVzdC1rZXktbm90LWEtc2VjcmV0LTMyLWJ5dGVzISE="


def test_refuses_to_resolve_without_master_key(docker_compose: str, tmp_path: Path) -> None:
    result = compose_config(docker_compose, tmp_path, LEDGER_POSTGRES_PASSWORD="test-password")
    assert result.returncode != 0
    assert "LEDGER_MASTER_KEY" in result.stderr


def test_refuses_to_resolve_without_postgres_password(docker_compose: str, tmp_path: Path) -> None:
    result = compose_config(docker_compose, tmp_path, LEDGER_MASTER_KEY="a-key")
    assert result.returncode != 0
    assert "LEDGER_POSTGRES_PASSWORD" in result.stderr


def test_postgresql_holds_the_views_and_the_vault_for_every_container(
        resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert services["postgres"]["image"] == "postgres:15"
    for name in ("consumers", "api"):
        env = services[name]["environment"]
        assert env["LEDGER_VIEWS_URL"].startswith("postgresql://ledger@postgres:5432/")
        assert env["LEDGER_VAULT_URL"].startswith("postgresql://ledger@postgres:5432/")
        assert env["PGPASSWORD"] == "test-password"  # not in the URL, not in a log line
        assert "postgres" in services[name]["depends_on"]


def test_consumers_scale_and_their_healthcheck_watches_the_lag(
        resolved: dict[str, Any]) -> None:
    consumers = resolved["services"]["consumers"]
    # `--scale consumers=3` needs no fixed name and no host port
    assert "container_name" not in consumers and "ports" not in consumers
    test = consumers["healthcheck"]["test"]
    assert "--check-lag" in test and "--state-file" in test
    assert not test[test.index("--state-file") + 1].startswith("/data")


def test_the_api_takes_its_first_admin_token_from_a_secret(resolved: dict[str, Any]) -> None:
    api = resolved["services"]["api"]
    assert [s["source"] for s in api["secrets"]] == ["admin-token"]
    assert api["environment"]["LEDGER_ADMIN_TOKEN_FILE"] == "/run/secrets/admin-token"
    assert resolved["secrets"]["admin-token"]["file"].endswith("secrets/admin-token")
    # the token itself is in no environment variable of any service
    for service in resolved["services"].values():
        assert not any("TOKEN" in k and "FILE" not in k for k in service.get("environment", {}))
