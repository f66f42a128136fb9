"""The import graph: no circle, and imports run one way (app > definitions > library > settings and utilities).

Every import statement is read from the source (those inside functions included), so a lazy import that
reaches upwards is caught as well as a top-level one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ROOT / "cancel_pipeline"
SIMULATORS = ROOT / "devkit" / "cancel_pipeline_simulators"

# Lower numbers are lower layers; a module may import its own layer or a lower one.
LAYERS: dict[str, int] = {
    "cancel_pipeline": 0,
    "cancel_pipeline.settings": 0,
    "cancel_pipeline.clock": 0,
    "cancel_pipeline.stuck_rule": 0,
    "cancel_pipeline.embedded": 0,
    "cancel_pipeline.shopify": 1,
    "cancel_pipeline.warehouse": 1,
    "cancel_pipeline.outbox": 1,
    "cancel_pipeline.defs": 2,
    "cancel_pipeline.definitions": 3,
    "cancel_pipeline.run_summary": 3,
    "cancel_pipeline.catch_up": 3,
    "cancel_pipeline.cli": 3,
}
# Within the library: the warehouse and the Shopify client stand alone; the outbox writes the warehouse.
LIBRARY_MAY_IMPORT = {
    "cancel_pipeline.shopify": {"cancel_pipeline.shopify"},
    "cancel_pipeline.warehouse": {"cancel_pipeline.warehouse"},
    "cancel_pipeline.outbox": {"cancel_pipeline.outbox", "cancel_pipeline.warehouse"},
}
# The one library module that must speak Dagster: the Shopify resource.
LIBRARY_DAGSTER_MODULES = {"cancel_pipeline.shopify.resource"}


def module_name(path: Path, package_dir: Path) -> str:
    parts = [package_dir.name, *path.relative_to(package_dir).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package_dir: Path) -> dict[str, Path]:
    return {module_name(path, package_dir): path for path in sorted(package_dir.rglob("*.py"))}


def imported_names(name: str, path: Path, known: dict[str, Path] | None = None) -> Iterator[str]:
    """Every module name an import statement of the file names (relative imports resolved).

    `from package import module` names the module, not the package, when `known` holds it."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = [f"{base}.{alias.name}" for alias in node.names]
            if known is None or not all(sub in known for sub in submodules):
                yield base
            yield from submodules


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    known = modules(package_dir)
    return {
        name: {target for target in imported_names(name, path, known) if target in known and target != name}
        for name, path in known.items()
    }


def layer_of(module: str) -> tuple[str, int]:
    prefix = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return prefix, LAYERS[prefix]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


@pytest.mark.parametrize("package_dir", [PRODUCT, SIMULATORS], ids=["product", "simulators"])
def test_no_import_circle(package_dir: Path) -> None:
    assert find_cycle(import_graph(package_dir)) is None


def test_the_circle_finder_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_imports_run_one_way() -> None:
    upward = []
    for module, targets in import_graph(PRODUCT).items():
        home, rank = layer_of(module)
        for target in targets:
            target_home, target_rank = layer_of(target)
            if target_rank > rank:
                upward.append(f"{module} -> {target}")
            elif rank == target_rank == 1 and target_home not in LIBRARY_MAY_IMPORT[home]:
                upward.append(f"{module} -> {target} (across the library)")
    assert upward == []


def test_every_module_has_a_layer() -> None:
    for module in modules(PRODUCT):
        layer_of(module)  # raises when no prefix matches


def test_library_and_utilities_are_free_of_dagster() -> None:
    speaking = set()
    for module, path in modules(PRODUCT).items():
        if layer_of(module)[1] <= 1 and any(
            name == "dagster" or name.startswith(("dagster.", "dagster_"))
            for name in imported_names(module, path)
        ):
            speaking.add(module)
    assert speaking == LIBRARY_DAGSTER_MODULES


def test_the_product_imports_the_simulators_only_at_the_embedded_default() -> None:
    importers = {
        module
        for module, path in modules(PRODUCT).items()
        if any(
            name.startswith(("cancel_pipeline_simulators", "cancel_pipeline_testkit"))
            for name in imported_names(module, path)
        )
    }
    assert importers == {"cancel_pipeline.embedded"}


def test_nothing_imports_a_private_dagster_module() -> None:
    private = [
        f"{module}: {name}"
        for module, path in modules(PRODUCT).items()
        for name in imported_names(module, path)
        if name.startswith("dagster._")
    ]
    assert private == []
