"""Runs whose process is gone: marked failed, and their `duckdb_writer` pool slots freed.

A run killed with `kill -9` (or whose machine lost power) never reports its end: it stays STARTED in the
instance and keeps its pool slot, so every later writer waits forever for the pool. Every event Dagster
records carries the PID of the process that wrote it (the run worker, and any step worker a multiprocess
executor starts), so a run none of whose processes is still alive is dead. Such a run is marked
failed and its slots are freed, saying so.

PIDs only mean something on the machine that recorded them. On a SQLite instance every run ran on this
machine; on a shared instance (PostgreSQL) runs may live elsewhere, so nothing is touched there and
Dagster's run monitoring (see `dagster.yaml`) and the UI are the way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from cancel_pipeline.defs.conventions import DUCKDB_WRITER_POOL

LIVE_STATUSES = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
"""Statuses of a run that claims to be executing. STARTING runs have no process of their own yet: Dagster's
run monitoring fails those that never start (`start_timeout_seconds`)."""

ENDED_STATUSES = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]

_PROCESS_EVENTS = {
    dg.DagsterEventType.RUN_START,
    dg.DagsterEventType.STEP_WORKER_STARTED,
    dg.DagsterEventType.STEP_START,
}


@dataclass(frozen=True)
class DeadRun:
    """A run that claims to be executing while none of its processes is alive."""

    run_id: str
    job_name: str
    pids: tuple[int, ...]
    held_slots: int

    def describe(self) -> str:
        """One line for a person: which run, which processes, what was done."""
        pids = ", ".join(str(pid) for pid in self.pids)
        slots = (
            f"freed its {self.held_slots} {DUCKDB_WRITER_POOL} slot(s)"
            if self.held_slots
            else "it held no slot"
        )
        return (
            f"run {self.run_id} of {self.job_name} was still marked running but its process (pid {pids}) is gone: "
            f"marked it failed and {slots}"
        )


def process_alive(pid: int) -> bool:
    """Whether a process with this PID runs on this machine (one we may not signal counts as alive; a zombie,
    killed but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # Linux: the state follows the command name in parentheses, which may itself hold spaces.
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def pids_are_local(instance: dg.DagsterInstance) -> bool:
    """Whether the runs of `instance` all ran on this machine: true of an instance on SQLite storage."""
    return "sqlite" in type(instance.run_storage).__name__.lower()


def run_pids(instance: dg.DagsterInstance, run_id: str) -> set[int]:
    """The PIDs of the processes that executed the run: its run worker and its step workers."""
    return {
        entry.dagster_event.pid
        for entry in instance.all_logs(run_id, of_type=_PROCESS_EVENTS)
        if entry.dagster_event is not None and entry.dagster_event.pid is not None
    }


def held_slots(instance: dg.DagsterInstance, run_id: str) -> int:
    """How many `duckdb_writer` slots the run holds."""
    info = instance.event_log_storage.get_concurrency_info(DUCKDB_WRITER_POOL)
    return sum(1 for slot in info.claimed_slots if slot.run_id == run_id)


def find_dead_runs(instance: dg.DagsterInstance) -> list[DeadRun]:
    """Runs marked running whose every recorded process is gone (none on a shared instance)."""
    if not pids_are_local(instance):
        return []
    dead = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=LIVE_STATUSES)):
        pids = run_pids(instance, run.run_id)
        # A run that has not recorded a process yet is starting, not dead.
        if pids and not any(process_alive(pid) for pid in pids):
            dead.append(
                DeadRun(run.run_id, run.job_name, tuple(sorted(pids)), held_slots(instance, run.run_id))
            )
    return dead


def fail_dead_runs(instance: dg.DagsterInstance) -> list[DeadRun]:
    """Mark every dead run failed and free its pool slots; returns what was done, for the caller to say."""
    dead = find_dead_runs(instance)
    for run in dead:
        record = instance.get_run_by_id(run.run_id)
        if record is None or record.status not in LIVE_STATUSES:
            continue  # it ended (or was deleted) while we looked
        instance.report_run_failed(record, f"Marked failed: {run.describe()}.")
        # Marking a run failed does not release its slots; without this the next writer waits forever.
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    return dead


def free_slots_of_ended_runs(instance: dg.DagsterInstance) -> list[str]:
    """Free the `duckdb_writer` slots still held by runs that have ended (failed or canceled from outside, say,
    as the UI's termination of a dead run does), as the daemon's run monitoring would; says what it freed."""
    info = instance.event_log_storage.get_concurrency_info(DUCKDB_WRITER_POOL)
    freed = []
    for run_id in sorted({slot.run_id for slot in info.claimed_slots}):
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status not in ENDED_STATUSES:
            continue
        slots = held_slots(instance, run_id)
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        what = f"of {run.job_name} had ended ({run.status.value})" if run else "no longer exists"
        freed.append(f"run {run_id} {what} but still held {slots} {DUCKDB_WRITER_POOL} slot(s): freed them")
    return freed


def release_pool(instance: dg.DagsterInstance) -> list[str]:
    """Fail the dead runs and free every slot a finished run still holds; one line per thing done."""
    return [run.describe() for run in fail_dead_runs(instance)] + free_slots_of_ended_runs(instance)


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Marks failed the runs whose process died without reporting (kill -9, a crash) and frees "
        "their duckdb_writer pool slots, so later runs are not blocked on the pool."
    ),
)
def dead_run_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """Every 30 s, marks failed the runs whose process died without reporting (`kill -9`, a crash) and
    frees their `duckdb_writer` slots, so later runs are not blocked on the pool forever."""
    done = release_pool(context.instance)
    for line in done:
        context.log.warning(line)
    if done:
        return dg.SkipReason("; ".join(done))
    return dg.SkipReason("No run marked running has lost its process.")
