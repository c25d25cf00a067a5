"""Dependencies point one way, read from the source so the rule cannot drift.

The layers, bottom to top; a module may import its own layer and the layers below:

    core       genreg/*.py, genreg/strategies  config, model, strategies, task, runner,
                                               checkpoint, data, plots
    stages     genreg/stages                   prepare, train, evaluate, analyze
    tracking   genreg/tracking                 MLflow runs, callback and model
    pipelines  pipelines/                      Prefect flows, the Optuna study
    cli        genreg/adapters                 the `genreg` command

Every import counts: module-level, inside functions and under TYPE_CHECKING. The MLOps
tools enter at one layer each (MLflow at tracking, Prefect and Optuna at pipelines), and
no two modules import each other, directly or round a loop.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("core", "stages", "tracking", "pipelines", "cli")
SUBPACKAGE_LAYERS = {  # longest prefix first; any other genreg module is core
    "genreg.adapters": "cli",
    "genreg.tracking": "tracking",
    "genreg.stages": "stages",
    "pipelines": "pipelines",
}
TOOL_LAYERS = {  # dvc runs the CLI: nothing may import it
    "mlflow": "tracking",
    "prefect": "pipelines",
    "optuna": "pipelines",
    "dvc": "cli",
}


def layer(module: str) -> str:
    for prefix, name in SUBPACKAGE_LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return name
    return "core"


def source_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name -> file of every module of genreg and pipelines under `root`."""
    modules = {}
    for path in sorted([*root.glob("genreg/**/*.py"), *root.glob("pipelines/**/*.py")]):
        parts = path.relative_to(root).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        modules[".".join(parts)] = path
    return modules


def imports(path: Path) -> Iterator[str]:
    """Every module name `path` imports (`from a import b` yields a and a.b)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the project modules it imports."""
    modules = source_modules(root)
    return {
        name: {m for m in imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def upward_imports(root: Path = ROOT) -> list[str]:
    """'a (layer) -> b (layer)' for each import of a higher layer or of a tool."""
    found = []
    for name, path in source_modules(root).items():
        rank = LAYERS.index(layer(name))
        for target in sorted(set(imports(path))):
            top = target.split(".")[0]
            if top in ("genreg", "pipelines"):
                target_layer = layer(target)
            elif top in TOOL_LAYERS:
                target_layer = TOOL_LAYERS[top]
            else:
                continue
            if LAYERS.index(target_layer) > rank:
                found.append(f"{name} ({layer(name)}) -> {target} ({target_layer})")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_imports_point_down_the_layers() -> None:
    assert upward_imports() == []


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_the_checks_see_a_violation(tmp_path: Path) -> None:
    """An upward import and a two-module loop, hidden in functions, are both found."""
    (tmp_path / "genreg" / "stages").mkdir(parents=True)
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "genreg" / "model.py").write_text("import mlflow\n")
    (tmp_path / "genreg" / "stages" / "train.py").write_text(
        "def f():\n    from pipelines.flows import run\n"
    )
    (tmp_path / "pipelines" / "flows.py").write_text(
        "def run():\n    import genreg.stages.train\n"
    )
    assert upward_imports(tmp_path) == [
        "genreg.model (core) -> mlflow (tracking)",
        "genreg.stages.train (stages) -> pipelines.flows (pipelines)",
        "genreg.stages.train (stages) -> pipelines.flows.run (pipelines)",
    ]
    assert cycles(import_graph(tmp_path)) == [
        ["genreg.stages.train", "pipelines.flows"]
    ]
