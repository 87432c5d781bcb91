"""The kit's tests collected as if their module sat among the user's tests: real node ids, the user's conftests.

The contract module lives in the installed package, outside the user's rootdir:
collected by its own path, its node ids had no file part (``::TestBackendContract::...``,
which pytest refuses on the command line) and no conftest of the user's reached it (a
``tests/conftest.py`` creating the backend's bucket never ran for the kit). Here it is
collected as ``<folder>/xcomsim_conformance.py`` under the same directory node as the
user's own tests in that folder, so pytest gives it every conftest (and fixture) a test
file there would get. The folder is the deepest one holding all of the user's collected
tests (else their conftests, else the rootdir), or the one named on the command line:
``pytest tests/xcomsim_conformance.py::TestBackendContract::test_x`` runs that test (the
file does not exist; the argument is read here and stands for the folder).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest

KIT_FILE = "xcomsim_conformance.py"
_WANTED = pytest.StashKey["_Wanted"]()
_FOLDERS = pytest.StashKey[dict]()


class _Wanted:
    def __init__(self, folder: Path | None, selections: list[str], others: list[Path]) -> None:
        self.folder = folder  # named on the command line, else chosen after collection
        self.selections = selections  # node ids inside the kit module asked for ('' for all of it)
        self.others = others  # the other paths on the command line: their tests stay selected


def want(config: pytest.Config) -> None:
    """Collect the kit in this session; arguments naming its module are read and replaced by their folder."""
    invocation = Path(config.invocation_params.dir)
    folder, selections, others, args = None, [], [], []
    for arg in config.args:
        path_part, _, inner = str(arg).partition("::")
        path = Path(os.path.abspath(invocation / path_part))
        if path.name == KIT_FILE and not path.exists():
            folder = folder or path.parent
            selections.append(inner)
            if str(path.parent) not in args:
                args.append(str(path.parent))
            continue
        others.append(path)
        args.append(arg)
    config.args[:] = args
    config.stash[_WANTED] = _Wanted(folder, selections, others)
    config.stash[_FOLDERS] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_make_collect_report(collector: pytest.Collector) -> None:
    """Remember each directory node collected: the kit's module goes under the one of its folder."""
    if isinstance(collector, pytest.Directory):
        collector.config.stash[_FOLDERS].setdefault(collector.path, collector)


class KitModule(pytest.Module):
    """The installed contract module, collected under a folder of the user's."""

    def _getobj(self) -> ModuleType:
        from xcomsim.conformance import suite

        return suite


def _deepest_common(paths: list[Path], root: Path) -> Path | None:
    inside = [p for p in paths if p == root or root in p.parents]
    return Path(os.path.commonpath(inside)) if inside else None


def _folder(session: pytest.Session, items: list[pytest.Item], wanted: _Wanted) -> Path:
    root = Path(str(session.config.rootpath))
    if wanted.folder is not None:
        return wanted.folder
    tests = [Path(str(item.path)).parent for item in items]
    conftests = [Path(str(getattr(m, "__file__", ""))).parent for m in session.config.pluginmanager.get_plugins()
                 if isinstance(m, ModuleType) and Path(str(getattr(m, "__file__", "") or "")).name == "conftest.py"]
    return _deepest_common(tests, root) or _deepest_common(conftests, root) or root


def _directory(session: pytest.Session, folder: Path) -> pytest.Collector:
    """The directory node collected for ``folder`` (its conftests' fixtures are attached to it), else a new chain."""
    known: dict[Path, pytest.Collector] = session.config.stash[_FOLDERS]
    if folder in known:
        return known[folder]
    root = Path(str(session.config.rootpath))
    parent: pytest.Collector = session
    chain = [root] + [root.joinpath(*folder.relative_to(root).parts[: n + 1]) for n in
                      range(len(folder.relative_to(root).parts))] if root in (folder, *folder.parents) else [folder]
    for path in chain:
        parent = known.get(path) or pytest.Dir.from_parent(parent, path=path)
    return parent


def _selected(nodeid: str, prefix: str) -> bool:
    return not prefix or nodeid == prefix or nodeid.startswith((f"{prefix}::", f"{prefix}["))


def _under(item: pytest.Item, paths: list[Path]) -> bool:
    where = Path(str(item.path))
    return any(where == p or p in where.parents for p in paths)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = config.stash.get(_WANTED, None)
    if wanted is None:
        return
    folder = _folder(session, items, wanted)
    module = KitModule.from_parent(_directory(session, folder), path=folder / KIT_FILE)
    kit = list(session.genitems(module))
    if wanted.folder is not None:  # kit tests named on the command line: those, and the other arguments' tests
        prefix = module.nodeid
        chosen = [i for i in kit if any(_selected(i.nodeid, f"{prefix}::{s}" if s else "") for s in wanted.selections)]
        kept = {id(i) for i in items if _under(i, wanted.others)} | {id(i) for i in chosen}
        dropped = [i for i in [*items, *kit] if id(i) not in kept]
        items[:] = [i for i in items if id(i) in kept]
        kit = chosen
        if dropped:
            config.hook.pytest_deselected(items=dropped)
    items.extend(kit)
