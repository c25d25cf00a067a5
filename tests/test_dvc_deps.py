"""dvc.yaml lists, for every stage, each genreg module its command imports.

So `dvc repro` reruns a stage whenever code it runs changes. The imports are found by
walking the source (AST, every `import` anywhere in a module, transitively) from the
command module a stage's `genreg <command>` runs; the CLI's argument dispatch
(genreg/adapters/cli.py) is left out, as it does not shape any output.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != "genreg":
        return None
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """Names of the modules `path` imports (`from a import b` also tries `a.b`)."""
    names: set[str] = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0]
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def imported_files(module: str) -> set[Path]:
    """Every genreg source file `module` needs, itself and its package __init__s."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b too
            path = _module_file(".".join(parts[:i]))
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(_imports(path))
    return seen


def _command_module(cmd: str) -> str:
    match = re.match(r"\s*genreg\s+(\w+)", cmd)
    assert match, f"stage command {cmd!r} does not run the genreg CLI"
    return f"genreg.adapters.commands.{match.group(1)}"


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_list_every_imported_module(stage: str) -> None:
    spec = STAGES[stage]
    deps = [d for d in spec.get("deps", []) if isinstance(d, str)]
    needed = imported_files(_command_module(spec["cmd"]))
    missing = sorted(
        str(p.relative_to(ROOT))
        for p in needed
        if (p.name != "__init__.py" or p.read_text().strip()) and not _covered(p, deps)
    )
    assert not missing, f"dvc.yaml stage {stage!r}: add to deps: {missing}"
    listed_code = [d for d in deps if d.startswith("genreg/")]
    unused = [d for d in listed_code if not any(_covered(p, [d]) for p in needed)]
    assert not unused, f"dvc.yaml stage {stage!r}: deps not imported: {unused}"


def test_walker_follows_function_level_and_package_imports() -> None:
    files = {
        str(p.relative_to(ROOT))
        for p in imported_files("genreg.adapters.commands.train")
    }
    assert "genreg/stages/train.py" in files  # imported inside run()
    assert "genreg/strategies/trust_ga.py" in files  # via the strategies package


def test_train_reruns_when_the_preset_changes() -> None:
    assert "preset" in STAGES["train"]["params"]
