"""The shape of the code: one folder per stage over a few shared modules, a library whose
import graph has no cycles and no arrow back up (nothing in the library imports ``cli/``),
no function over 60 lines, and the architecture page listing exactly the modules that
exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "deepfake_detect"
MAX_LINES = 60
# The only modules at the top of the package: what every stage shares.
SHARED = {"atomic", "config", "console", "errors", "identity", "runs", "scaling", "task",
          "tracking"}
# The folders by layer, bottom first: an import points to its own folder or a lower layer
# (the shared modules are the bottom layer; among themselves, the no-cycles test holds).
LAYERS = [{"shared"}, {"data"}, {"models"}, {"inference"}, {"evaluation"},
          {"reporting", "explain"}, {"training", "bench"}, {"cli"}]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package modules ``path`` imports (anywhere in the file), resolved to modules."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("deepfake_detect"):
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    known = set(modules())
    return {name: imports_of(path, known) - {name} for name, path in modules().items()}


def test_the_import_graph_has_no_cycles() -> None:
    edges = graph()
    # A package's __init__ re-exporting its own submodules is not a cycle of behaviour.
    edges = {m: {d for d in deps if not (d.startswith(m + ".") and m in modules()
                                         and modules()[m].name == "__init__.py")}
             for m, deps in edges.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name)


def folder_of(module: str) -> str:
    """``deepfake_detect.training.plan`` -> ``training``; a top-level module -> ``shared``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) \
        else "shared"


def test_only_the_shared_modules_sit_at_the_top() -> None:
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top == SHARED
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert folders == set().union(*LAYERS) - {"shared"}


def test_no_import_points_back_up() -> None:
    layer = {folder: i for i, folders in enumerate(LAYERS) for folder in folders}
    upward = sorted(f"{name} -> {dep}" for name, deps in graph().items()
                    if not name.endswith("__main__")  # an entry point, like a console script
                    for dep in deps
                    if folder_of(dep) != folder_of(name)
                    and layer[folder_of(dep)] >= layer[folder_of(name)])
    assert not upward, upward


def test_the_library_never_imports_the_commands() -> None:
    upward = sorted(f"{name} -> {dep}" for name, deps in graph().items()
                    if not name.startswith("deepfake_detect.cli")
                    and not name.endswith("__main__")  # an entry point, like a console script
                    for dep in deps if dep.startswith("deepfake_detect.cli"))
    assert not upward, upward


def test_no_function_is_longer_than_60_lines() -> None:
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_LINES:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert not long, long


def test_no_function_is_named_after_another_module() -> None:
    """A function named like a library module or folder (``run``, ``robustness``) shadows it
    wherever both are imported; its own module's main function (``plan.plan``) is fine."""
    library = {p.stem for p in PACKAGE.rglob("*.py") if "cli" not in p.parts}
    names = (library | {p.name for p in PACKAGE.iterdir() if p.is_dir()}) - {"__init__",
                                                                            "__main__"}
    clashes = [f"{name}.{node.name}" for name, path in modules().items()
               for node in ast.parse(path.read_text()).body
               if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name in names
               and node.name != path.stem]
    assert not clashes, clashes


def test_architecture_page_lists_every_module_and_nothing_else() -> None:
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    listed = set(re.findall(r"`(deepfake_detect(?:/[\w]+)*(?:\.py|/))`", page))
    present = {str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py")
               if p.name != "__init__.py"}
    present |= {str(p.relative_to(PACKAGE.parent)) + "/" for p in [PACKAGE, *PACKAGE.rglob("*")]
                if p.is_dir() and (p / "__init__.py").exists()}
    assert sorted(present - listed) == [], "missing from docs/architecture.md"
    assert sorted(listed - present) == [], "listed in docs/architecture.md but not in the code"


def test_the_training_command_starts_without_mlflow_or_torch() -> None:
    """A finished job of a re-run sweep is reported from its stored result: the command's
    imports must not pay for MLflow or torch (each is loaded when a run actually starts)."""
    import subprocess
    import sys

    code = ("import sys, deepfake_detect.cli.train; "
            "print(sorted(m for m in ('mlflow', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
