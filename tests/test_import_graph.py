"""The intended import graph of studylib's packages, checked on the real imports, transitively (issue 15, item 11).

Every ``import``/``from ... import`` in ``src/studylib`` (at module level or inside a function:
both are dependencies) and every module named in a string (lazy exports, preload lists) is an
edge from the importing unit (a top-level package or module) to the imported one. The test
holds that edge list to :data:`MAY_IMPORT` (which package may import which, directly), that the
graph without the two detours the issue still has to remove is free of cycles, and that nothing
reaches, through any chain, what DESIGN section 2 forbids: ``analysis`` never reaches ``report``
or ``runner``, nothing reaches ``cli``, and no stage reaches a stage further down the flow.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "studylib"

#: Modules at the bottom that every package may use.
FOUNDATION = frozenset({"studylib", "errors", "paths", "lazy_exports", "inputs", "config", "machine"})

#: Which unit may import which, directly (the intended graph; acyclic).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "studylib": frozenset(),
    "errors": frozenset(),
    "paths": frozenset(),
    "machine": frozenset(),
    "lazy_exports": frozenset(),
    "inputs": frozenset(),
    "config": frozenset({"errors", "inputs"}),
    "data": FOUNDATION,
    "indicators": FOUNDATION | {"data"},
    "privacy": FOUNDATION | {"data"},
    "forms": FOUNDATION | {"data", "indicators", "privacy"},
    "analysis": FOUNDATION | {"data", "indicators", "forms"},
    "synthetic": FOUNDATION | {"data", "indicators", "forms"},
    "training": FOUNDATION | {"data", "indicators", "synthetic"},
    "report": FOUNDATION | {"data", "indicators", "analysis", "privacy"},
    "demo": FOUNDATION | {"data", "forms", "privacy", "synthetic"},
    "runner": FOUNDATION | {"data", "indicators", "privacy", "analysis", "report"},
    "exchange": FOUNDATION | {"data", "indicators", "privacy", "runner"},  # exports join the release (runner.release)
}
MAY_IMPORT["cli"] = frozenset(MAY_IMPORT) - {"cli"}

#: Edges the code still has and the intended graph has not (each must still exist: remove it here once fixed).
DETOURS = {
    ("runner", "demo"): "the runner ensures the demo dataset (item 11: the CLI ensures it once and hands the runner a resolver)",
}

#: Never reached through any chain of imports (DESIGN section 2 and the flow).
NEVER_REACHES = {
    "analysis": {"report", "runner", "cli"},
    "privacy": {"analysis", "report", "runner", "cli"},
    "report": {"runner", "cli"},
    "runner": {"cli", "exchange"},
    "data": {"analysis", "report", "runner", "cli", "synthetic", "training"},
}

_MODULE_NAME = re.compile(r"studylib(\.[a-z_][a-z0-9_]*)+")


def _unit(name: str) -> str:
    parts = name.split(".")[1:]
    return parts[0] if parts and not parts[0].startswith("__") else "studylib"


def _exists(name: str) -> bool:
    path = SRC.joinpath(*name.split(".")[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """The studylib modules a source file imports (statements anywhere, and module names in strings)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"studylib.{a.name}" for a in node.names} if node.module == "studylib" else {node.module}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_NAME.fullmatch(node.value) and _exists(node.value):
            found.add(node.value)
    return {name for name in found if name == "studylib" or name.startswith("studylib.")}


def actual_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).parts
        unit = "studylib" if parts == ("__init__.py",) else parts[0].removesuffix(".py")
        graph.setdefault(unit, set())
        graph[unit] |= {_unit(name) for name in imports_of(path)} - {unit}
    return graph


def reach(graph: dict[str, set[str]] | dict[str, frozenset[str]], start: str) -> set[str]:
    seen, todo = set(), list(graph.get(start, ()))
    while todo:
        unit = todo.pop()
        if unit not in seen:
            seen.add(unit)
            todo += graph.get(unit, ())
    return seen


def test_every_unit_is_in_the_intended_graph():
    assert set(actual_graph()) == set(MAY_IMPORT)


def test_every_import_is_an_edge_of_the_intended_graph():
    wrong = sorted((unit, target) for unit, targets in actual_graph().items() for target in targets
                   if target not in MAY_IMPORT[unit] and (unit, target) not in DETOURS)
    assert not wrong, f"imports the intended graph does not have (see MAY_IMPORT): {wrong}"


def test_the_known_detours_are_still_there():
    graph = actual_graph()
    gone = [edge for edge in DETOURS if edge[1] not in graph[edge[0]]]
    assert not gone, f"fixed: remove {gone} from DETOURS"


def test_the_intended_graph_and_the_code_without_its_detours_have_no_cycle():
    graph = actual_graph()
    without = {u: {t for t in ts if (u, t) not in DETOURS} for u, ts in graph.items()}
    for g, name in ((MAY_IMPORT, "intended"), (without, "actual")):
        cyclic = sorted(u for u in g if u in reach(g, u))
        assert not cyclic, f"the {name} graph has cycles through {cyclic}"


def test_nothing_reaches_what_the_flow_forbids_through_any_chain():
    graph = actual_graph()
    for unit in graph:
        assert "cli" not in reach(graph, unit) or unit == "cli", f"{unit} reaches cli"
    for unit, banned in NEVER_REACHES.items():
        reached = reach(graph, unit) & banned
        assert not reached, f"{unit} reaches {sorted(reached)} through its imports"


def test_the_checker_sees_imports_inside_functions_and_in_strings(tmp_path):
    """The other side: the checker itself finds each kind of import."""
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from studylib.report import safe_table\n"
                      "import studylib.privacy.audit\nfrom studylib import paths\nLAZY = {'x': 'studylib.analysis.extent'}\n"
                      "NOT = 'studylib.no_such_module'\n")
    assert imports_of(source) == {"studylib.report", "studylib.privacy.audit", "studylib.paths", "studylib.analysis.extent"}
    assert reach({"a": {"b"}, "b": {"c"}, "c": set()}, "a") == {"b", "c"}
