"""Start `dagster dev` the way a user does, wait until it serves the project, and stop it without leftovers.

The server runs in its own session (and so its own process group) so that one signal reaches the webserver,
the daemon and every code-server and run worker they spawned; a non-interactive `dagster dev` may ignore a
SIGINT sent to the leader alone.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS_MODULE = "cancel_pipeline.definitions"

# Variables that could point the server at a real store or a user's instance; the test sets its own.
_ISOLATED_VARIABLES = (
    "DAGSTER_HOME",
    "CANCEL_PIPELINE_DUCKDB",
    "SHOPIFY_STORE",
    "SHOPIFY_ACCESS_TOKEN",
    "SHOPIFY_CLIENT_ID",
    "SHOPIFY_CLIENT_SECRET",
    "SHOPIFY_API_VERSION",
)

_LOCATION_QUERY = """
query Locations {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message }
        }
      }
    }
  }
}
"""


class DagsterDevError(RuntimeError):
    """`dagster dev` did not start, did not load the project, or did not stop cleanly."""


@dataclass(frozen=True)
class DagsterDevServer:
    """A running `dagster dev` and the files it works with."""

    base_url: str
    graphql_url: str
    dagster_home: Path
    duckdb_path: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, lines: int = 60) -> str:
        """The last lines the server wrote, for error messages."""
        return log_tail(self.log_path, lines)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 60) -> str:
    """The last `lines` lines of a log file, or a note that it is empty."""
    if not path.exists():
        return "(no log written)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:]) or "(log is empty)"


def server_environment(
    dagster_home: Path, duckdb_path: Path, extra_env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for `dagster dev`: the caller's, minus anything that points outside the test."""
    env = {key: value for key, value in os.environ.items() if key not in _ISOLATED_VARIABLES}
    env["DAGSTER_HOME"] = str(dagster_home)
    env["CANCEL_PIPELINE_DUCKDB"] = str(duckdb_path)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra_env or {})
    return env


@contextmanager
def run_dagster_dev(
    workdir: Path,
    *,
    module: str = DEFINITIONS_MODULE,
    extra_env: Mapping[str, str] | None = None,
    instance_yaml: str | None = None,
    startup_timeout: float = 120.0,
    stop_timeout: float = 30.0,
) -> Iterator[DagsterDevServer]:
    """Run `dagster dev -m <module>` on a free port of 127.0.0.1 with a fresh instance under `workdir`.

    The instance gets the project's dagster.yaml, or `instance_yaml` (its text) when given, e.g. for a
    benchmark comparing instance storages. Yields once the webserver answers and the code location has
    loaded; on exit stops the whole process group and raises `DagsterDevError` if any process of it is
    still alive.
    """
    dagster_home = workdir / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    if instance_yaml is None:
        shutil.copyfile(PROJECT_ROOT / "deploy" / "local" / "dagster.yaml", dagster_home / "dagster.yaml")
    else:
        (dagster_home / "dagster.yaml").write_text(instance_yaml)
    duckdb_path = workdir / "warehouse.duckdb"
    log_path = workdir / "dagster_dev.log"
    port = free_port()
    executable = PROJECT_ROOT / ".venv" / "bin" / "dagster"
    command = [str(executable), "dev", "-m", module, "-h", "127.0.0.1", "-p", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=server_environment(dagster_home, duckdb_path, extra_env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    server = DagsterDevServer(
        base_url=base_url,
        graphql_url=f"{base_url}/graphql",
        dagster_home=dagster_home,
        duckdb_path=duckdb_path,
        log_path=log_path,
        process=process,
    )
    try:
        wait_until_ready(server, startup_timeout)
        yield server
    finally:
        stop_dagster_dev(server, stop_timeout)


def wait_until_ready(server: DagsterDevServer, timeout: float) -> None:
    """Block until the webserver answers and every code location is loaded without error."""
    deadline = time.monotonic() + timeout
    last_problem = "no answer yet"
    with httpx.Client(timeout=5.0) as http:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise DagsterDevError(
                    f"dagster dev exited with code {server.process.returncode} before it was ready;"
                    f" last lines of its log:\n{server.log_tail()}"
                )
            try:
                if http.get(f"{server.base_url}/server_info").status_code != 200:
                    last_problem = "/server_info did not answer 200"
                else:
                    answer = http.post(server.graphql_url, json={"query": _LOCATION_QUERY}).json()
                    last_problem = location_problem(answer)
                    if last_problem is None:
                        return
            except httpx.TransportError as error:
                last_problem = f"{type(error).__name__}: {error}"
            time.sleep(0.25)
    raise DagsterDevError(
        f"dagster dev was not ready within {timeout:.0f} s ({last_problem}); last lines of its log:\n"
        f"{server.log_tail()}"
    )


def location_problem(answer: dict) -> str | None:
    """Why the workspace is not usable yet, or None when every location has loaded."""
    workspace = (answer.get("data") or {}).get("workspaceOrError") or {}
    entries = workspace.get("locationEntries")
    if not entries:
        return f"no code location yet ({answer.get('errors') or workspace.get('__typename')})"
    for entry in entries:
        if entry["loadStatus"] != "LOADED":
            return f"code location {entry['name']} is {entry['loadStatus']}"
        location = entry["locationOrLoadError"] or {}
        if location.get("__typename") == "PythonError":
            # A broken definitions module never gets better by waiting: fail at once.
            raise DagsterDevError(f"code location {entry['name']} failed to load: {location['message']}")
    return None


def session_processes(session_id: int) -> list[tuple[int, str]]:
    """Live (pid, command) pairs whose session is `session_id`; zombies are already dead and not listed."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # the process ended while we looked
        # Fields after the parenthesised command name: state, ppid, pgrp, session, ...
        state, _ppid, _pgrp, session = stat[stat.rindex(")") + 2 :].split()[:4]
        if int(session) == session_id and state != "Z":
            found.append((int(entry.name), command.strip()))
    return found


def stop_dagster_dev(server: DagsterDevServer, timeout: float = 30.0) -> None:
    """SIGTERM the server's process group, SIGKILL it after `timeout`, and insist nothing of it survives."""
    stop_session(server.process, timeout, "dagster dev")


def stop_session(process: subprocess.Popen[bytes], timeout: float = 30.0, name: str = "the process") -> None:
    """SIGTERM the session `process` leads (started with `start_new_session`), SIGKILL it after `timeout`,
    and raise `DagsterDevError` if any process of the session survives."""
    group = process.pid  # start_new_session makes the leader's pid the group and session id
    _signal_group(group, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(group, signal.SIGKILL)
        process.wait(timeout=10)
    # Children may outlive the leader by a moment while they shut down, and during shutdown Dagster sometimes
    # restarts its code server ("Code server process has exited ... Restarting"): a respawned child never got
    # the first signal, so the group is asked again until it is empty, and killed if it will not go.
    deadline = time.monotonic() + timeout
    next_signal = time.monotonic() + 2
    while session_processes(group) and time.monotonic() < deadline:
        if time.monotonic() >= next_signal:
            _signal_session(group, signal.SIGTERM)
            next_signal = time.monotonic() + 2
        time.sleep(0.2)
    if session_processes(group):
        _signal_session(group, signal.SIGKILL)
        kill_deadline = time.monotonic() + 10
        while session_processes(group) and time.monotonic() < kill_deadline:
            time.sleep(0.2)
    leftovers = session_processes(group)
    if leftovers:
        for pid, _command in leftovers:
            _kill_quietly(pid)
        listing = "\n".join(f"  {pid}: {command[:200]}" for pid, command in leftovers)
        raise DagsterDevError(f"processes of {name} survived SIGTERM and SIGKILL:\n{listing}")


def _signal_session(session_id: int, sig: signal.Signals) -> None:
    # A respawned child may sit in a process group of its own, but it keeps the session.
    _signal_group(session_id, sig)
    for pid, _command in session_processes(session_id):
        with suppress(ProcessLookupError):
            os.kill(pid, sig)


def _signal_group(group: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):  # the whole group has already exited
        os.killpg(group, sig)


def _kill_quietly(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
