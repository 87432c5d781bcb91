"""xcomsim's layers import downward only: every import, at module level or inside a function.

A lower layer that needs something from a higher one is handed a callback from above (the race
scheduler registers its request scope with the Execution API bridge; the affinity code asks the
child servers which of them serve). A module belongs to the layer of its longest listed prefix.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Bottom to top. Within a layer imports are free; across layers only downward.
LAYERS: list[tuple[str, ...]] = [
    ("xcomsim", "xcomsim.errors", "xcomsim.compat"),  # Airflow's versions, named once
    ("xcomsim.backend", "xcomsim.strategies", "xcomsim.profiles", "xcomsim.noise"),
    ("xcomsim.env", "xcomsim.settings"),  # the world's parts: stores, metadata DB, the Execution API bridge
    ("xcomsim.runner",),  # DAG runs through Airflow's scheduler and task runner
    ("xcomsim.env.environment", "xcomsim.env:__init__"),  # the world assembled: Simulation, Environment.run_dag
    ("xcomsim.task_context",),  # code acting as a running task instance
    ("xcomsim.scheduler",),  # the race scheduler and its I/O interception
    ("xcomsim.checks",),
    ("xcomsim.conformance", "xcomsim.mutants"),
    ("xcomsim.bench", "xcomsim.html_report", "xcomsim.soak", "xcomsim.cli"),  # soak: a deployment judged by checks
    ("pytest_plugin",),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]) + ":__init__"  # a package's own code, apart from its modules
    return ".".join(parts)


def _layer(module: str) -> int:
    best, found = -1, None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + ".") or module.startswith(prefix + ":"):
                if len(prefix) > best:
                    best, found = len(prefix), index
    assert found is not None, f"{module} is in no layer: add it to LAYERS"
    return found


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> list[tuple[str, int]]:
    """xcomsim modules ``path`` imports anywhere in it, as modules (``from pkg import mod`` is ``pkg.mod``)."""
    package = _module_name(path).replace(":__init__", "")
    if not path.name == "__init__.py":
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.append((target if _is_module(target) else base, node.lineno))
    return [(name, line) for name, line in found if name.split(".")[0] in ("xcomsim", "pytest_plugin")]


def _target(name: str) -> str:
    """A package imported as such runs its ``__init__``."""
    return f"{name}:__init__" if (ROOT.joinpath(*name.split(".")) / "__init__.py").is_file() else name


def upward_imports() -> list[str]:
    found = []
    for path in sorted([*ROOT.glob("xcomsim/**/*.py"), *ROOT.glob("pytest_plugin/*.py")]):
        module = _module_name(path)
        for name, line in _imports(path):
            target = _target(name)
            if _layer(target) > _layer(module):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name} (layer {_layer(target)} > {_layer(module)})")
    return found


def test_every_import_goes_down_the_layers():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """The check can fail: the import that made the circle (the Execution API bridge importing the
    race scheduler's interception), put back in a copy of the tree, is found."""
    import shutil

    shutil.copytree(ROOT / "xcomsim", tmp_path / "xcomsim")
    shutil.copytree(ROOT / "pytest_plugin", tmp_path / "pytest_plugin")
    bridge = tmp_path / "xcomsim" / "env" / "execution_api.py"
    bridge.write_text(bridge.read_text() + "\n\ndef _upward():\n    from xcomsim.scheduler.interception import serving\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    found = upward_imports()
    assert len(found) == 1 and "xcomsim/env/execution_api.py" in found[0] and "xcomsim.scheduler.interception" in found[0]


def test_importing_a_part_of_the_world_loads_nothing_above_it():
    """At run time too: the Execution API bridge and the runner load neither the race scheduler nor the
    assembled environment (``xcomsim.env`` loads ``Simulation`` only when asked for it)."""
    import subprocess
    import sys

    code = (
        "import sys, xcomsim.env.execution_api, xcomsim.runner, xcomsim.task_context;"
        "print(sorted(m for m in sys.modules if m.startswith(('xcomsim.scheduler', 'xcomsim.env.environment'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
