"""Which assets a backfill of the cancellation feed targets, and which partitions of each."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from cancel_pipeline_testkit.graphql import AssetNode


def downstream_closure(nodes: Mapping[str, AssetNode], root: str) -> list[str]:
    """`root` and every asset that depends on it, directly or not, in a stable order (root first)."""
    children: dict[str, list[str]] = {}
    for node in nodes.values():
        for parent in node.dependencies:
            children.setdefault(parent, []).append(node.key)
    selected, frontier = [root], [root]
    while frontier:
        for child in sorted(children.get(frontier.pop(0), [])):
            if child not in selected:
                selected.append(child)
                frontier.append(child)
    return selected


def partition_ranges(
    keys: list[str], nodes: Mapping[str, AssetNode], defs: dg.Definitions, window: dg.TimeWindow
) -> dict[str, tuple[str, str] | None]:
    """For each asset, its first and last partition inside `window`, or None when it is unpartitioned.

    The keys come from each asset's own partitions definition, so assets with different window lengths
    (30-minute and hourly) each get the windows that cover the same span of time.
    """
    asset_graph = defs.resolve_asset_graph()
    ranges: dict[str, tuple[str, str] | None] = {}
    for key in keys:
        if not nodes[key].is_partitioned:
            ranges[key] = None
            continue
        partitions_def = asset_graph.get(dg.AssetKey.from_user_string(key)).partitions_def
        if not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
            raise AssertionError(f"{key} is partitioned by {partitions_def!r}, not by time windows")
        window_keys = partitions_def.get_partition_keys_in_time_window(window)
        if not window_keys:
            raise AssertionError(f"{key} has no partition inside {window}")
        ranges[key] = (window_keys[0], window_keys[-1])
    return ranges


def partition_keys_in_range(defs: dg.Definitions, key: str, key_range: tuple[str, str]) -> list[str]:
    """Every partition key of `key` from `key_range[0]` to `key_range[1]`, both included."""
    partitions_def = defs.resolve_asset_graph().get(dg.AssetKey.from_user_string(key)).partitions_def
    assert partitions_def is not None, f"{key} is not partitioned"
    return list(partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange(*key_range)))
