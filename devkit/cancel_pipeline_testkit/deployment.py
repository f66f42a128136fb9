"""Start the project as it is deployed (deploy/postgres/): a gRPC code server, the daemon and the webserver as
three processes on one instance whose storage is PostgreSQL, and stop them without leftovers.

Each process runs its docker-compose.yml service's command, moved to 127.0.0.1 and free ports. The instance
folder gets deploy/postgres/dagster.yaml as it is, and a workspace rendered from deploy/postgres/workspace.yaml
with the code server's host and port. Only the code server (and so every run,
which the default run launcher starts as its subprocess) gets the store's settings and the DuckDB file; the
webserver and the daemon get the instance alone, as in docker-compose.yml.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from cancel_pipeline_testkit.dagster_dev import (
    PROJECT_ROOT,
    DagsterDevError,
    free_port,
    location_problem,
    log_tail,
    server_environment,
    stop_session,
)

DEPLOY_FOLDER = PROJECT_ROOT / "deploy" / "postgres"
POSTGRES_URL_VARIABLE = "DAGSTER_POSTGRES_URL"
"""The variable deploy/postgres/dagster.yaml reads the instance's connection URL from."""

_LOCATIONS = """
query Locations {
  workspaceOrError {
    __typename
    ... on Workspace { locationEntries { name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } }
  }
}
"""


@dataclass(frozen=True)
class Deployment:
    """The three running processes, their logs, and the files they share."""

    base_url: str
    graphql_url: str
    dagster_home: Path
    duckdb_path: Path
    grpc_port: int
    processes: Mapping[str, subprocess.Popen[bytes]]
    logs: Mapping[str, Path]

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of every process's log, for error messages."""
        return "\n".join(f"--- {name} ---\n{log_tail(path, lines)}" for name, path in self.logs.items())


def render_workspace(host: str, port: int) -> str:
    """deploy/postgres/workspace.yaml with its one gRPC server moved to `host`:`port`."""
    workspace = yaml.safe_load((DEPLOY_FOLDER / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    entry["grpc_server"].update(host=host, port=port)
    return yaml.safe_dump(workspace, sort_keys=False)


def compose_command(service: str, options: Mapping[str, str]) -> list[str]:
    """The command of a docker-compose.yml service, run from the project's .venv, with the value after each
    flag in `options` replaced (e.g. `{"-p": "8123"}`); a flag the command lacks is an error."""
    compose = yaml.safe_load((DEPLOY_FOLDER / "docker-compose.yml").read_text())
    command = [str(part) for part in compose["services"][service]["command"]]
    for flag, value in options.items():
        if flag not in command:
            raise DagsterDevError(f"the {service} service's command has no {flag}: {command}")
        command[command.index(flag) + 1] = value
    return [str(PROJECT_ROOT / ".venv" / "bin" / command[0]), *command[1:]]


@contextmanager
def run_deployment(
    workdir: Path,
    postgres_url: str,
    *,
    code_env: Mapping[str, str] | None = None,
    startup_timeout: float = 180.0,
    stop_timeout: float = 10.0,
) -> Iterator[Deployment]:
    """Start code server, daemon and webserver on a fresh instance under `workdir`, stored at `postgres_url`.

    `code_env` goes to the code server only (the store's URL and token, say). Yields once the webserver
    serves the loaded code location; on exit stops the processes in reverse order and raises
    `DagsterDevError` if any survives. A code server that has run runs was seen to ignore SIGTERM for
    30 s and more, so each process is killed after `stop_timeout`, as `docker compose down` does after 10 s.
    """
    dagster_home = workdir / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DEPLOY_FOLDER / "dagster.yaml", dagster_home / "dagster.yaml")
    duckdb_path = workdir / "warehouse.duckdb"
    grpc_port, web_port = free_port(), free_port()
    workspace = dagster_home / "workspace.yaml"
    workspace.write_text(render_workspace("127.0.0.1", grpc_port))
    instance_env = server_environment(dagster_home, duckdb_path, {POSTGRES_URL_VARIABLE: postgres_url})
    del instance_env["CANCEL_PIPELINE_DUCKDB"]  # only the code server opens the warehouse
    # The commands are docker-compose.yml's own, moved to this machine's ports and files.
    # As the compose file's instance_init: the schema and the pool exist before three processes race.
    _run_once(
        compose_command("instance_init", {}),
        instance_env,
        "creating the instance's tables and the duckdb_writer pool",
    )
    commands = {
        "code": compose_command("code", {"-h": "127.0.0.1", "-p": str(grpc_port)}),
        "daemon": compose_command("daemon", {"-w": str(workspace)}),
        "webserver": compose_command(
            "webserver", {"-h": "127.0.0.1", "-p": str(web_port), "-w": str(workspace)}
        ),
    }
    environments = {
        "code": server_environment(
            dagster_home, duckdb_path, {POSTGRES_URL_VARIABLE: postgres_url, **(code_env or {})}
        ),
        "daemon": instance_env,
        "webserver": instance_env,
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: workdir / f"{name}.log" for name in commands}
    base_url = f"http://127.0.0.1:{web_port}"
    deployment = Deployment(
        base_url=base_url,
        graphql_url=f"{base_url}/graphql",
        dagster_home=dagster_home,
        duckdb_path=duckdb_path,
        grpc_port=grpc_port,
        processes=processes,
        logs=logs,
    )
    with ExitStack() as stack:
        for name, command in commands.items():
            processes[name] = _start(command, environments[name], logs[name])
            stack.callback(stop_session, processes[name], stop_timeout, name)
            if name == "code":
                # The workspace must find the server listening, or the location starts out in error.
                _wait_for_port(deployment, grpc_port, startup_timeout)
        _wait_for_location(deployment, startup_timeout)
        yield deployment


def _run_once(command: list[str], env: Mapping[str, str], what: str) -> None:
    answer = subprocess.run(
        command, cwd=PROJECT_ROOT, env=dict(env), capture_output=True, text=True, check=False
    )
    if answer.returncode != 0:
        raise DagsterDevError(f"{what} failed with code {answer.returncode}:\n{answer.stderr[-3000:]}")


def _start(command: list[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    # Own session: one signal reaches the process and every run worker it spawned.
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _check_alive(deployment: Deployment) -> None:
    for name, process in deployment.processes.items():
        if process.poll() is not None:
            raise DagsterDevError(
                f"{name} exited with code {process.returncode} before the deployment was ready;"
                f" last lines of the logs:\n{deployment.log_tail()}"
            )


def _wait_for_port(deployment: Deployment, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _check_alive(deployment)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.25)
    raise DagsterDevError(
        f"the code server did not listen on {port} within {timeout:.0f} s:\n{deployment.log_tail()}"
    )


def _wait_for_location(deployment: Deployment, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_problem = "no answer yet"
    with httpx.Client(timeout=5.0) as http:
        while time.monotonic() < deadline:
            _check_alive(deployment)
            try:
                answer = http.post(deployment.graphql_url, json={"query": _LOCATIONS}).json()
                last_problem = location_problem(answer)
                if last_problem is None:
                    return
            except (httpx.TransportError, ValueError) as error:
                last_problem = f"{type(error).__name__}: {error}"
            time.sleep(0.25)
    raise DagsterDevError(
        f"the webserver did not serve the code location within {timeout:.0f} s ({last_problem}):\n"
        f"{deployment.log_tail()}"
    )
