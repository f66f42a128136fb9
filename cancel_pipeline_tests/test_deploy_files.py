"""The PostgreSQL deployment's files (deploy/postgres/) hang together. There is no Docker engine to run the
compose file in the tests, so this checks what can be checked without one: it parses, every service that
runs Dagster runs a command this environment has with options that command accepts, the image gets the files
it copies, and the instance, the workspace and the services agree. The e2e test runs the same commands."""

from __future__ import annotations

import re
import subprocess
from itertools import takewhile
from pathlib import Path
from typing import Any

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEPLOY = PROJECT_ROOT / "deploy" / "postgres"
DAGSTER_SERVICES = ("instance_init", "code", "webserver", "daemon")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def dagster_home(dockerfile: str) -> str:
    match = re.search(r"^ENV DAGSTER_HOME=(\S+)$", dockerfile, re.MULTILINE)
    assert match, "the Dockerfile sets no DAGSTER_HOME"
    return match.group(1)


def test_compose_has_the_deployment_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgresql", "pgbouncer", *DAGSTER_SERVICES}
    image = compose["services"]["instance_init"]["image"]
    build = compose["services"]["instance_init"]["build"]
    for name in DAGSTER_SERVICES:
        assert compose["services"][name]["image"] == image, f"{name} runs another image"
        assert compose["services"][name]["build"] == build, f"{name} builds another image"


def test_image_is_built_from_the_project(compose: dict[str, Any], dockerfile: str) -> None:
    build = compose["services"]["instance_init"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == PROJECT_ROOT
    assert (context / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    sources = []
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            sources.extend(line.split()[1:-1])
    assert sources, "the Dockerfile copies nothing"
    missing = [source for source in sources if not (context / source).exists()]
    assert not missing, f"the Dockerfile copies files the project lacks: {missing}"


def test_every_dagster_service_reaches_the_instance(compose: dict[str, Any]) -> None:
    for name in DAGSTER_SERVICES:
        url = compose["services"][name]["environment"]["DAGSTER_POSTGRES_URL"]
        # psycopg 3, picked by a bare postgresql:// on SQLAlchemy 2.1, breaks dagster-postgres 0.29.
        assert url.startswith("postgresql+psycopg2://"), f"{name}: {url}"
        # Through the pooler, never PostgreSQL directly (docs/deployment.md says why).
        port = compose["services"]["pgbouncer"]["environment"]["PGBOUNCER_PORT"]
        assert f"@pgbouncer:{port}/dagster" in url, f"{name} does not point at the pgbouncer service: {url}"
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert instance["storage"] == {"postgres": {"postgres_url": {"env": "DAGSTER_POSTGRES_URL"}}}


def test_only_the_code_service_holds_the_store_and_the_warehouse(compose: dict[str, Any]) -> None:
    for name in DAGSTER_SERVICES:
        environment = compose["services"][name]["environment"]
        store_variables = {key for key in environment if key.startswith(("SHOPIFY_", "CANCEL_PIPELINE_"))}
        if name == "code":
            assert {"SHOPIFY_STORE", "CANCEL_PIPELINE_DUCKDB"} <= store_variables
            volumes = compose["services"][name]["volumes"]
            duckdb_folder = str(Path(environment["CANCEL_PIPELINE_DUCKDB"]).parent)
            assert f"warehouse:{duckdb_folder}" in volumes, volumes
        else:
            assert not store_variables, f"{name} gets {store_variables}"


def test_workspace_points_at_the_code_service(compose: dict[str, Any], dockerfile: str) -> None:
    (entry,) = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())["load_from"]
    server = entry["grpc_server"]
    assert server["host"] == "code"
    command = compose["services"]["code"]["command"]
    assert command[command.index("-p") + 1] == str(server["port"])
    workspace_path = f"{dagster_home(dockerfile)}/workspace.yaml"
    for name in ("webserver", "daemon"):
        command = compose["services"][name]["command"]
        assert command[command.index("-w") + 1] == workspace_path, f"{name} reads another workspace"


def test_instance_keeps_the_local_settings() -> None:
    deployed = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    local = yaml.safe_load((PROJECT_ROOT / "deploy" / "local" / "dagster.yaml").read_text())
    # Only the storage differs: pools, the queue, run monitoring and the run's loggers are the same.
    assert {key: value for key, value in deployed.items() if key != "storage"} == local
    assert deployed["run_monitoring"]["enabled"] is True


def test_service_commands_exist_with_their_options(compose: dict[str, Any]) -> None:
    commands = [compose["services"][name]["command"] for name in DAGSTER_SERVICES]
    commands.append(compose["services"]["code"]["healthcheck"]["test"][1:])
    for command in commands:
        executable = PROJECT_ROOT / ".venv" / "bin" / command[0]
        assert executable.exists(), f"{command[0]} is not installed"
        # Subcommands are the leading words, up to the first option or argument.
        subcommands = list(takewhile(lambda word: re.fullmatch(r"[a-z][a-z-]*", word), command[1:]))
        flags = {word for word in command if word.startswith("-")}
        answer = subprocess.run(
            [str(executable), *subcommands, "--help"], capture_output=True, text=True, check=False
        )
        assert answer.returncode == 0, f"{command}: {answer.stderr[-500:]}"
        unknown = [flag for flag in flags if not re.search(rf"(^|[\s,]){re.escape(flag)}\b", answer.stdout)]
        assert not unknown, f"{command[:3]} does not take {unknown}"


def test_pgbouncer_forwards_to_the_postgresql_service(compose: dict[str, Any]) -> None:
    service = compose["services"]["pgbouncer"]
    environment = service["environment"]
    postgresql = compose["services"]["postgresql"]["environment"]
    assert environment["POSTGRES_HOST"] == "postgresql"
    assert environment["POSTGRES_PORT"] == "5432"
    for variable in ("POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"):
        assert environment[variable] == postgresql[variable], variable
    assert service["depends_on"] == {"postgresql": {"condition": "service_healthy"}}
    assert compose["services"]["instance_init"]["depends_on"] == {
        "pgbouncer": {"condition": "service_healthy"}
    }
    # The health check asks PgBouncer's own port.
    check = service["healthcheck"]["test"]
    assert check[check.index("-p") + 1] == environment["PGBOUNCER_PORT"], check


def test_pgbouncer_image_runs_the_script_the_tests_run(compose: dict[str, Any]) -> None:
    context = DEPLOY / compose["services"]["pgbouncer"]["build"]["context"]
    dockerfile = (context / "Dockerfile").read_text()
    copies = [line.split()[1:] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert copies == [["start-pgbouncer.sh", "/usr/local/bin/start-pgbouncer.sh"]], copies
    assert 'ENTRYPOINT ["/usr/local/bin/start-pgbouncer.sh"]' in dockerfile
    script = context / "start-pgbouncer.sh"
    assert script.stat().st_mode & 0o111, "start-pgbouncer.sh is not executable"
    syntax = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr
    # Every variable the script insists on is one the compose service sets.
    required = set(re.findall(r"\$\{(\w+):\?", script.read_text()))
    assert required == {"POSTGRES_HOST", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"}, required
    assert required <= set(compose["services"]["pgbouncer"]["environment"])
