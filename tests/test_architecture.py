"""The layering the README's architecture section promises, checked on the source: no import
cycles between the project's modules (imports inside functions count too), test-scene
builders and scorers kept out of the stages, and scene inputs read only by the front door."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hiscene_sim", "exporters", "physics")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module ``name`` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        found |= {t for t in targets if t in modules and t != name}
    return found


def import_graph() -> nx.DiGraph:
    modules = _modules()
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        graph.add_edges_from((name, target) for target in _imported(name, path, modules))
    return graph


def test_the_graph_sees_the_imports_it_must():
    graph = import_graph()
    assert graph.has_edge("hiscene_sim.cli", "hiscene_sim.options")  # module level
    assert graph.has_edge("hiscene_sim.orchestrator", "hiscene_sim.stages")
    assert graph.has_edge("hiscene_sim.stages", "hiscene_sim.complete.stage")  # inside a function
    assert len(graph) > 80


def test_no_import_cycles():
    cycles = list(nx.simple_cycles(import_graph()))
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c + [c[0]]) for c in cycles)


def test_stages_do_not_import_the_testing_module():
    graph = import_graph()
    allowed = {"hiscene_sim.demo", "hiscene_sim.cli"}  # the demo scores its parse against its known ground truth
    users = {a for a, b in graph.edges if b.startswith("hiscene_sim.testing") and not a.startswith("hiscene_sim.testing")}
    assert users <= allowed, f"product modules importing hiscene_sim.testing: {sorted(users - allowed)}"


def test_scene_inputs_are_read_only_by_the_front_door():
    """3DGS sniffing and scene-file loading for inputs live in hiscene_sim/inputs.py alone."""
    readers = []
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        # the PLY reader itself, and the TRELLIS adapter reading the file its own model just wrote
        if name in ("hiscene_sim.inputs", "hiscene_sim.render.gaussians", "hiscene_sim.generate.trellis"):
            continue
        if "is_3dgs_ply(" in text or "load_3dgs_ply(" in text or 'force="scene"' in text:
            readers.append(name)
    assert readers == []
