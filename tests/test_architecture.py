"""The dependency rule of ARCHITECTURE.md, checked on the import graph (grimp, the graph behind
import-linter): apps depend one way, jobsconsole -> demo -> jobs -> accounts -> core, and no
module of the project imports itself through others."""

from __future__ import annotations

import grimp
import pytest

LAYERS = ["jobsconsole", "demo", "jobs", "accounts", "core"]  # each may import only those after it


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # Imports under `if TYPE_CHECKING:` only name types for mypy; they run never and are left out
    # (an admin view may name the ModelAdmin that calls it).
    return grimp.build_graph(
        *LAYERS, include_external_packages=False, exclude_type_checking_imports=True
    )


def _project_modules(graph: grimp.ImportGraph) -> list[str]:
    # Migrations are Django's, loaded by name; they import only models' fields.
    return sorted(m for m in graph.modules if ".migrations" not in m)


@pytest.mark.parametrize(
    ("upper", "lower"),
    [(upper, lower) for i, lower in enumerate(LAYERS) for upper in LAYERS[:i]],
)
def test_a_lower_layer_never_imports_an_upper_one(graph, upper, lower):
    chains = graph.find_shortest_chains(importer=lower, imported=upper)
    assert not chains, f"{lower} imports {upper}: {sorted(chains)}"


def test_no_module_imports_itself_through_others(graph):
    modules = _project_modules(graph)
    imports = {
        module: {m for m in graph.find_modules_directly_imported_by(module) if m in modules}
        for module in modules
    }
    cycles = _strongly_connected(imports)
    assert cycles == [], f"import cycles: {cycles}"


def test_the_cycle_check_finds_a_cycle():
    # The check above can fail: a made-up graph with a cycle is reported.
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c"]
    ]


def _strongly_connected(imports: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other (Tarjan), largest first; [] when acyclic."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(imports.get(module, ())):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                group.append(other)
                if other == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(imports):
        if module not in index:
            visit(module)
    return sorted(groups, key=len, reverse=True)
