"""Query cost as Shopify computes it, and the points bucket that meters it (per app, i.e. per store here).

Rules (shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits): a scalar or enum field
costs 0, an object 1, an interface or union the dearest of its possible selections; a connection costs
2 + first (or last) x the cost of one node, multiplying through nesting (the "+2" is what clients observe,
not documented); the connection's own `edges`, `pageInfo` and the edge object are free. A mutation costs 10.
Guesses: a list field with `first` (Order.refunds) costs first x one element, without `first` one element;
`nodes(ids:)` costs one element per id. The actual cost repeats the count over what was returned, so fewer
nodes than `first` refunds the difference.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    is_abstract_type,
    is_leaf_type,
    value_from_ast,
)

MUTATION_COST = 10
SINGLE_QUERY_MAX = 1000
FREE_CONNECTION_PARTS = ("pageInfo",)


class _Walker:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def arguments(self, definition: GraphQLField, node: FieldNode) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for argument in node.arguments:
            arg_def = definition.args.get(argument.name.value)
            if arg_def is not None:
                values[argument.name.value] = value_from_ast(argument.value, arg_def.type, self.variables)
        return values

    def selection_cost(self, selection_set: SelectionSetNode | None, parent: Any, data: Any) -> int:
        """Fields sum; fragments on other types of an abstract parent count the dearest one."""
        if selection_set is None:
            return 0
        shared = 0
        by_type: dict[str, int] = {}
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                shared += self.field_cost(selection, parent, data)
                continue
            if isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is None:
                    continue
                condition, inner = fragment.type_condition, fragment.selection_set
            else:
                assert isinstance(selection, InlineFragmentNode)
                condition, inner = selection.type_condition, selection.selection_set
            target = self.schema.get_type(condition.name.value) if condition else parent
            known = isinstance(data, dict) and "__typename" in data and target is not None
            if known and getattr(target, "name", None) not in (
                data["__typename"],
                getattr(parent, "name", None),
            ):
                # Only the fragment on the returned type applies to what came back.
                continue
            name = getattr(target, "name", "")
            by_type[name] = by_type.get(name, 0) + self.selection_cost(inner, target or parent, data)
        return shared + max(by_type.values(), default=0)

    def field_cost(self, node: FieldNode, parent: Any, data: Any) -> int:
        name = node.name.value
        if name.startswith("__") or (
            not isinstance(parent, GraphQLObjectType) and not is_abstract_type(parent)
        ):
            return 0
        definition = parent.fields.get(name)
        if definition is None:
            return 0
        named = get_named_type(definition.type)
        if is_leaf_type(named):
            return 0
        key = node.alias.value if node.alias else name
        value = data.get(key) if isinstance(data, dict) else None
        actual = isinstance(data, dict)
        if named.name.endswith("Connection"):
            return self.connection_cost(node, definition, named, value, actual)
        if _is_list(definition.type):
            if actual:
                items = value if isinstance(value, list) else []
                return sum(1 + self.selection_cost(node.selection_set, named, item) for item in items if item)
            args = self.arguments(definition, node)
            count = len(args["ids"]) if "ids" in args else args.get("first") or 1
            return count * (1 + self.selection_cost(node.selection_set, named, None))
        if actual and value is None:
            return 0
        return 1 + self.selection_cost(node.selection_set, named, value if actual else None)

    def connection_cost(
        self, node: FieldNode, definition: GraphQLField, connection: Any, value: Any, actual: bool
    ) -> int:
        # One node's cost, from `nodes { ... }` or `edges { node { ... } }`, whichever is dearer.
        node_type = connection.fields["nodes"].type
        named_node = get_named_type(node_type)
        parts: list[tuple[str, SelectionSetNode | None]] = []
        for selection in node.selection_set.selections if node.selection_set else ():
            if not isinstance(selection, FieldNode):
                continue
            part_key = selection.alias.value if selection.alias else selection.name.value
            if selection.name.value == "nodes":
                parts.append((part_key, selection.selection_set))
            elif selection.name.value == "edges" and selection.selection_set:
                for inner in selection.selection_set.selections:
                    if isinstance(inner, FieldNode) and inner.name.value == "node":
                        inner_key = inner.alias.value if inner.alias else "node"
                        parts.append((f"{part_key}/{inner_key}", inner.selection_set))
        if not actual:
            args = self.arguments(definition, node)
            size = args.get("first") or args.get("last") or 0
            one = max((1 + self.selection_cost(s, named_node, None) for _, s in parts), default=0)
            return 2 + size * one
        if not isinstance(value, dict):
            return 0
        best = 0
        for part_key, selection_set in parts:
            if "/" in part_key:
                edges_key, node_key = part_key.split("/")
                items = [edge.get(node_key) for edge in value.get(edges_key) or [] if isinstance(edge, dict)]
            else:
                items = value.get(part_key) or []
            best = max(best, sum(1 + self.selection_cost(selection_set, named_node, i) for i in items if i))
        return 2 + best


def _is_list(field_type: Any) -> bool:
    while isinstance(field_type, GraphQLNonNull):
        field_type = field_type.of_type
    return isinstance(field_type, GraphQLList)


def query_cost(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
    data: dict[str, Any] | None = None,
) -> int:
    """The requested cost (data None) or the actual cost of what `data` holds."""
    if operation.operation == OperationType.MUTATION:
        return MUTATION_COST
    walker = _Walker(schema, fragments, variables)
    root = schema.query_type
    if data is None:
        return walker.selection_cost(operation.selection_set, root, None)
    return walker.selection_cost(operation.selection_set, root, data)


# -- the bucket -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostStatus:
    """extensions.cost.throttleStatus."""

    maximum: float
    available: float
    restore_rate: float

    def as_json(self) -> dict[str, Any]:
        """As Shopify writes it."""
        return {
            "maximumAvailable": float(self.maximum),
            "currentlyAvailable": math.floor(self.available),
            "restoreRate": float(self.restore_rate),
        }


class PointsBucket:
    """Points per key that refill at `restore_rate` a second (real time) up to `maximum`."""

    def __init__(
        self, maximum: float, restore_rate: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.maximum = maximum
        self.restore_rate = restore_rate
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._levels: dict[str, tuple[float, float]] = {}

    def _level(self, key: str, now: float) -> float:
        level, then = self._levels.get(key, (self.maximum, now))
        return min(self.maximum, level + (now - then) * self.restore_rate)

    def take(self, key: str, cost: int) -> tuple[bool, CostStatus]:
        """Spend `cost` points if the bucket holds them; (allowed, status after)."""
        with self._lock:
            now = self._monotonic()
            level = self._level(key, now)
            allowed = level >= cost
            if allowed:
                level -= cost
            self._levels[key] = (level, now)
            return allowed, CostStatus(self.maximum, level, self.restore_rate)

    def refund(self, key: str, points: int) -> CostStatus:
        """Give back what a query did not use."""
        with self._lock:
            now = self._monotonic()
            level = min(self.maximum, self._level(key, now) + max(points, 0))
            self._levels[key] = (level, now)
            return CostStatus(self.maximum, level, self.restore_rate)

    def drain(self, key: str, level: float = 0.0) -> None:
        """Set a key's bucket to `level` points (tests and demos of throttling)."""
        with self._lock:
            self._levels[key] = (level, self._monotonic())

    def reset(self) -> None:
        """Fill every bucket."""
        with self._lock:
            self._levels.clear()
