"""Bulk query operations: validation, a worker that writes the JSONL result, the lifecycle as clients see it.

The worker writes the whole result to a file at once (a snapshot of the store at creation time); what a client
sees follows a latency model instead: CREATED for `bulk_start_delay` seconds, then RUNNING with objectCount
growing at 1,000 objects per `bulk_seconds_per_1000` seconds, then COMPLETED (or FAILED). Elapsed time is the
larger of the store clock's advance and real time, so tests on a frozen clock can jump ahead and a live demo
just waits. Cancelling shows CANCELING for `bulk_cancel_delay` seconds, then CANCELED.

JSONL: one line per node of the top-level connection; each node of a connection nested in it is a line of its
own carrying `__parentId`, written right after its parent (whatever `groupObjects` says: that order
satisfies both of its meanings). List fields (an order's `refunds`), and any
connection inside one (`refunds { refundLineItems }`), stay inline in the parent's line: Shopify does not
document where such a connection goes, this is a choice.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    parse,
    validate,
)

BULK_ID_BASE = 4_039_184_154_000
MAX_CONNECTIONS = 5
MAX_NESTING = 2
URL_LIFETIME = timedelta(days=7)
FINISHED = ("COMPLETED", "FAILED", "CANCELED", "EXPIRED")

PageRunner = Callable[[DocumentNode, str | None], tuple[dict[str, Any], str | None]]
"""Runs the bulk query's document for one page after a cursor: (data, cursor of the next page or None)."""


class BulkQueryInvalid(ValueError):
    """A bulk query Shopify would refuse with userError code INVALID."""


@dataclass
class BulkOperation:
    """One bulk query and what its worker has done so far."""

    number: int
    query: str
    created: datetime
    started_monotonic: float
    token: str
    path: str
    objects: int = 0
    roots: int = 0
    size: int = 0
    done: bool = False
    error_code: str | None = None
    cancel_requested: datetime | None = None
    cancel_monotonic: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def gid(self) -> str:
        """gid://shopify/BulkOperation/<n>."""
        return f"gid://shopify/BulkOperation/{self.number}"


@dataclass(frozen=True)
class BulkTiming:
    """The latency model (seconds)."""

    start_delay: float
    seconds_per_1000: float
    cancel_delay: float


def validate_bulk_query(schema: GraphQLSchema, text: str) -> DocumentNode:
    """Parse and check a bulk query against Shopify's rules; raises BulkQueryInvalid naming the problem."""
    try:
        document = parse(text)
    except GraphQLError as error:
        raise BulkQueryInvalid(f"Invalid bulk query: {error.message}") from None
    errors = validate(schema, document)
    if errors:
        raise BulkQueryInvalid(f"Invalid bulk query: {errors[0].message}")
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation != OperationType.QUERY:
        raise BulkQueryInvalid("Invalid bulk query: it must be exactly one query operation")
    if operations[0].variable_definitions:
        raise BulkQueryInvalid("Invalid bulk query: variables are not supported in bulk queries")
    roots = _fields(operations[0].selection_set)
    if any(f.name.value in ("node", "nodes") for f in roots):
        raise BulkQueryInvalid("Bulk queries cannot contain a top level `node` or `nodes` field.")
    connections = _connections(schema, operations[0].selection_set, schema.query_type, 0)
    if not connections:
        raise BulkQueryInvalid("Bulk queries must contain at least one connection.")
    if len(roots) != 1 or not _is_connection(schema, schema.query_type, roots[0]):
        raise BulkQueryInvalid(
            "Bulk queries must have exactly one top level field, and it must be a connection."
        )
    if len(connections) > MAX_CONNECTIONS:
        raise BulkQueryInvalid(f"Bulk queries cannot contain more than {MAX_CONNECTIONS} connections.")
    deepest = max(depth for depth, _, _ in connections)
    if deepest > MAX_NESTING:
        raise BulkQueryInvalid(
            f"Bulk queries cannot contain connections with a nesting depth greater than {MAX_NESTING}."
        )
    for _depth, node_selection, has_nested in connections:
        if has_nested and not any(f.name.value == "id" and f.alias is None for f in _fields(node_selection)):
            raise BulkQueryInvalid(
                "The parent 'node' field for a nested connection must select the 'id' field without an alias."
            )
    return document


def _fields(selection_set: SelectionSetNode | None) -> list[FieldNode]:
    """Fields of a selection set, inline fragments flattened."""
    found: list[FieldNode] = []
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            found.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            found.extend(_fields(selection.selection_set))
    return found


def _is_connection(schema: GraphQLSchema, parent: Any, node: FieldNode) -> bool:
    definition = getattr(parent, "fields", {}).get(node.name.value)
    return definition is not None and get_named_type(definition.type).name.endswith("Connection")


def _connections(
    schema: GraphQLSchema, selection_set: SelectionSetNode | None, parent: Any, depth: int
) -> list[tuple[int, SelectionSetNode | None, bool]]:
    """(nesting depth, node selection, whether it holds a nested connection) for every connection."""
    found: list[tuple[int, SelectionSetNode | None, bool]] = []
    for node in _fields(selection_set):
        definition = getattr(parent, "fields", {}).get(node.name.value)
        if definition is None:
            continue
        named = get_named_type(definition.type)
        if named.name.endswith("Connection"):
            node_type = get_named_type(named.fields["nodes"].type)
            for node_selection in _node_selections(node):
                inner = _connections(schema, node_selection, node_type, depth + 1)
                direct = any(_is_connection(schema, node_type, f) for f in _fields(node_selection))
                found.append((depth + 1, node_selection, direct))
                found.extend(inner)
        elif hasattr(named, "fields"):
            found.extend(_connections(schema, node.selection_set, named, depth))
    return found


def _node_selections(connection: FieldNode) -> list[SelectionSetNode | None]:
    selections = []
    for part in _fields(connection.selection_set):
        if part.name.value == "nodes":
            selections.append(part.selection_set)
        elif part.name.value == "edges":
            selections += [n.selection_set for n in _fields(part.selection_set) if n.name.value == "node"]
    return selections


# -- JSONL ----------------------------------------------------------------------------------------------


def jsonl_lines(
    schema: GraphQLSchema, document: DocumentNode, data: dict[str, Any]
) -> Iterator[tuple[bytes, bool]]:
    """The JSONL lines of one page of the top-level connection: (line, is a root object)."""
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    root = _fields(operation.selection_set)[0]
    key = root.alias.value if root.alias else root.name.value
    definition = schema.query_type.fields[root.name.value]
    node_type = get_named_type(get_named_type(definition.type).fields["nodes"].type)
    for node, selection in _connection_nodes(root, data.get(key)):
        yield from _node_lines(node, selection, node_type, None)


def _connection_nodes(connection: FieldNode, value: Any) -> Iterator[tuple[dict[str, Any], FieldNode]]:
    if not isinstance(value, dict):
        return
    for part in _fields(connection.selection_set):
        part_key = part.alias.value if part.alias else part.name.value
        if part.name.value == "nodes":
            for node in value.get(part_key) or []:
                yield node, part
            return
        if part.name.value == "edges":
            node_fields = [n for n in _fields(part.selection_set) if n.name.value == "node"]
            for edge in value.get(part_key) or []:
                for node_field in node_fields:
                    node_key = node_field.alias.value if node_field.alias else "node"
                    yield edge[node_key], node_field
            return


def _node_lines(
    node: dict[str, Any], selection: FieldNode, node_type: Any, parent_id: str | None
) -> Iterator[tuple[bytes, bool]]:
    line: dict[str, Any] = {}
    children: list[tuple[FieldNode, Any, Any]] = []
    by_key = {(f.alias.value if f.alias else f.name.value): f for f in _fields(selection.selection_set)}
    for key, value in node.items():
        field_node = by_key.get(key)
        definition = node_type.fields.get(field_node.name.value) if field_node else None
        named = get_named_type(definition.type) if definition else None
        if named is not None and named.name.endswith("Connection"):
            children.append((field_node, value, get_named_type(named.fields["nodes"].type)))
        else:
            line[key] = value
    if parent_id is not None:
        line["__parentId"] = parent_id
    yield orjson.dumps(line) + b"\n", parent_id is None
    for field_node, value, child_type in children:
        for child, child_selection in _connection_nodes(field_node, value):
            yield from _node_lines(child, child_selection, child_type, node["id"])


# -- the operations ---------------------------------------------------------------------------------------


class BulkOperations:
    """The store's bulk operations and their result files (in a private temporary folder)."""

    def __init__(self, timing: BulkTiming) -> None:
        self.timing = timing
        self._lock = threading.Lock()
        self._operations: dict[int, BulkOperation] = {}
        self._by_token: dict[str, BulkOperation] = {}
        self._numbers = itertools.count(BULK_ID_BASE + 1)
        self._folder: str | None = None
        self._finalizer: weakref.finalize | None = None
        self.peak_running = 0
        """The most operations running at once so far (counted as each starts): what concurrency a client got."""

    def _results_folder(self) -> str:
        # Made on the first bulk query (most stores never run one) and removed when the store goes away; a
        # finalizer, not TemporaryDirectory, which warns when it is cleaned up implicitly.
        with self._lock:
            if self._folder is None:
                self._folder = tempfile.mkdtemp(prefix="demo-store-bulk-")
                self._finalizer = weakref.finalize(self, shutil.rmtree, self._folder, True)
            return self._folder

    def close(self) -> None:
        """Remove the result files now."""
        if self._finalizer is not None:
            self._finalizer()

    def all(self) -> list[BulkOperation]:
        """Every operation so far, oldest first."""
        with self._lock:
            return [self._operations[number] for number in sorted(self._operations)]

    def running(self, now: datetime) -> list[BulkOperation]:
        """Operations not yet finished as clients see them."""
        with self._lock:
            operations = list(self._operations.values())
        return [op for op in operations if self.status(op, now) not in FINISHED]

    def start(
        self,
        schema: GraphQLSchema,
        text: str,
        document: DocumentNode,
        now: datetime,
        run_page: PageRunner,
        fail: dict[str, Any] | None = None,
    ) -> BulkOperation:
        """Create an operation and start its worker."""
        self.peak_running = max(self.peak_running, len(self.running(now)) + 1)
        number = next(self._numbers)
        token = secrets.token_urlsafe(16)
        op = BulkOperation(
            number=number,
            query=text,
            created=now,
            started_monotonic=time.monotonic(),
            token=token,
            path=os.path.join(self._results_folder(), f"{number}.jsonl"),
        )
        with self._lock:
            self._operations[number] = op
            self._by_token[token] = op
        worker = threading.Thread(
            target=self._work, args=(op, schema, document, run_page, fail), daemon=True, name=f"bulk-{number}"
        )
        worker.start()
        return op

    def _work(
        self,
        op: BulkOperation,
        schema: GraphQLSchema,
        document: DocumentNode,
        run_page: PageRunner,
        fail: dict[str, Any] | None,
    ) -> None:
        limit = None if fail is None else int(fail.get("after_objects", 0))
        error_code = None
        try:
            with open(op.path, "wb") as out:
                cursor: str | None = None
                while True:
                    data, cursor = run_page(document, cursor)
                    for line, is_root in jsonl_lines(schema, document, data):
                        if limit is not None and op.objects >= limit:
                            raise _Stop
                        out.write(line)
                        with op.lock:
                            op.objects += 1
                            op.roots += int(is_root)
                            op.size += len(line)
                    if cursor is None or op.cancel_requested is not None:
                        break
                if limit is not None:
                    raise _Stop
        except _Stop:
            error_code = (fail or {}).get("error_code", "INTERNAL_SERVER_ERROR")
        except Exception:
            # A bug in the simulator shows as Shopify's own failure, not a dead thread.
            error_code = "INTERNAL_SERVER_ERROR"
        with op.lock:
            op.error_code = error_code
            op.done = True

    def get(self, number: int) -> BulkOperation | None:
        """An operation by number."""
        with self._lock:
            return self._operations.get(number)

    def latest(self) -> BulkOperation | None:
        """The most recent operation (currentBulkOperation)."""
        with self._lock:
            return self._operations[max(self._operations)] if self._operations else None

    def by_token(self, token: str) -> BulkOperation | None:
        """The operation whose result file a download URL names."""
        with self._lock:
            return self._by_token.get(token)

    def cancel(self, op: BulkOperation, now: datetime) -> None:
        """Ask the operation to stop (CANCELING, then CANCELED)."""
        with op.lock:
            op.cancel_requested = now
            op.cancel_monotonic = time.monotonic()

    # -- what a client sees -------------------------------------------------------------------------------

    def _elapsed(self, since: datetime, since_monotonic: float, now: datetime) -> float:
        return max((now - since).total_seconds(), time.monotonic() - since_monotonic)

    def _needed(self, objects: int) -> float:
        return self.timing.start_delay + objects / 1000 * self.timing.seconds_per_1000

    def status(self, op: BulkOperation, now: datetime) -> str:
        """CREATED, RUNNING, COMPLETED, FAILED, CANCELING, CANCELED or EXPIRED at `now`."""
        with op.lock:
            done, objects, error_code = op.done, op.objects, op.error_code
            cancel, cancel_monotonic = op.cancel_requested, op.cancel_monotonic
        elapsed = self._elapsed(op.created, op.started_monotonic, now)
        finished = done and elapsed >= self._needed(objects)
        if (
            cancel is not None
            and cancel_monotonic is not None
            and not (finished and self._finished_before(op, cancel))
        ):
            waited = self._elapsed(cancel, cancel_monotonic, now)
            return "CANCELED" if waited >= self.timing.cancel_delay else "CANCELING"
        if not finished:
            return "CREATED" if elapsed < self.timing.start_delay else "RUNNING"
        if error_code is not None:
            return "FAILED"
        completed = self.completed_at(op)
        if completed is not None and now >= completed + URL_LIFETIME:
            return "EXPIRED"
        return "COMPLETED"

    def _finished_before(self, op: BulkOperation, moment: datetime) -> bool:
        completed = self.completed_at(op)
        return completed is not None and completed <= moment

    def completed_at(self, op: BulkOperation) -> datetime | None:
        """When it finished on the store's clock (creation plus the modelled duration)."""
        with op.lock:
            if not op.done:
                return None
            objects = op.objects
        return (op.created + timedelta(seconds=self._needed(objects))).replace(microsecond=0)

    def visible_objects(self, op: BulkOperation, now: datetime) -> tuple[int, int]:
        """(objectCount, rootObjectCount) a client sees now: growing while RUNNING."""
        with op.lock:
            objects, roots, done = op.objects, op.roots, op.done
        elapsed = self._elapsed(op.created, op.started_monotonic, now) - self.timing.start_delay
        if done and elapsed >= objects / 1000 * self.timing.seconds_per_1000:
            return objects, roots
        if elapsed <= 0:
            return 0, 0
        per_1000 = self.timing.seconds_per_1000
        shown = min(objects, int(elapsed * 1000 / per_1000)) if per_1000 else objects
        return shown, min(roots, shown)

    def as_graphql(self, op: BulkOperation, now: datetime, base_url: str) -> dict[str, Any]:
        """The BulkOperation object."""
        status = self.status(op, now)
        objects, roots = self.visible_objects(op, now)
        completed = self.completed_at(op) if status in ("COMPLETED", "FAILED", "EXPIRED") else None
        if status == "CANCELED":
            completed = op.cancel_requested
        url = partial = None
        expires = int((completed + URL_LIFETIME).timestamp()) if completed else 0
        link = f"{base_url}/bulk-results/{op.token}.jsonl?expires={expires}"
        if status in ("COMPLETED", "EXPIRED") and objects:
            url = link
        if status == "FAILED" and objects:
            partial = link
        return {
            "__typename": "BulkOperation",
            "id": op.gid,
            "status": status,
            "errorCode": op.error_code if status == "FAILED" else None,
            "createdAt": _z(op.created),
            "completedAt": _z(completed) if completed else None,
            "objectCount": str(objects),
            "rootObjectCount": str(roots),
            "fileSize": str(op.size) if status in ("COMPLETED", "FAILED", "EXPIRED") and objects else None,
            "url": url,
            "partialDataUrl": partial,
            "query": op.query,
            "type": "QUERY",
        }

    def downloadable(self, op: BulkOperation, now: datetime) -> bool:
        """Whether the result file may be read now (finished with data; not past the URL's lifetime)."""
        return self.status(op, now) in ("COMPLETED", "FAILED")


class _Stop(Exception):
    """The worker stops early (a scripted failure)."""


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_range(path: str, start: int, stop: int, chunk: int = 1 << 16) -> Iterator[bytes]:
    """Stream bytes [start, stop) of a file in chunks."""
    with open(path, "rb") as source:
        source.seek(start)
        remaining = stop - start
        while remaining > 0:
            block = source.read(min(chunk, remaining))
            if not block:
                break
            remaining -= len(block)
            yield block
