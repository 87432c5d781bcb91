"""Installing the XCom backend under test, everywhere Airflow bound it.

Airflow resolves ``[core] xcom_backend`` once, when
``airflow.sdk.execution_time.xcom`` is imported, and other modules copy the
resulting class into their own namespace (``task_runner`` at import,
``airflow.models`` lazily). Re-resolving is not enough, so every module-level
``XCom`` name that still holds the previous backend is rebound. The config
variable is set too, so anything resolving afresh agrees.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.machinery
import os
import pkgutil
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

from xcomsim.errors import BackendImportError

_CONFIG_VAR = "AIRFLOW__CORE__XCOM_BACKEND"
# Folders a backend's top-level module is also looked for in when it is not on sys.path:
# the pytest rootdir (added by the plugin) and the current directory, as users expect from pytest.
_SEARCH: list[Path] = []


def search_also(folders: Iterable[Path | str]) -> None:
    """Look for backend modules in ``folders`` too (after sys.path), e.g. pytest's rootdir."""
    for folder in folders:
        path = Path(folder).resolve()
        if path not in _SEARCH:
            _SEARCH.append(path)


def _import(module_name: str, path: str) -> object:
    """Import ``module_name``; a top-level package missing from sys.path is looked for in the search folders."""
    top = module_name.partition(".")[0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != top:
            raise  # the module exists; something it imports does not
    folders = [*_SEARCH, Path.cwd().resolve()]
    for folder in dict.fromkeys(folders):
        if importlib.machinery.PathFinder.find_spec(top, [str(folder)]) is not None:
            sys.path.append(str(folder))  # after sys.path: never shadows an installed package
            importlib.invalidate_caches()
            return importlib.import_module(module_name)
    raise BackendImportError(_not_found(path, top, folders))


def _not_found(path: str, top: str, folders: list[Path]) -> str:
    # sys.path entries the user put there (pytest's pythonpath, test folders), not the interpreter's or Airflow's own.
    system = [Path(p).resolve() for p in (sys.prefix, sys.base_prefix, *sysconfig.get_paths().values())]
    home = os.environ.get("AIRFLOW_HOME")
    system += [Path(home).resolve()] if home else []
    user = [p for p in sys.path if p and not p.endswith(".zip")
            and not any(Path(p).resolve().is_relative_to(s) for s in system)]  # fmt: skip
    places = list(dict.fromkeys([*folders, *map(Path, user)]))
    searched = ", ".join(str(f) for f in places)
    near = _near(top, {m.name for m in pkgutil.iter_modules([str(f) for f in places])})
    return (
        f"XCom backend {path!r}: no module named {top!r}{near} in {searched} or the installed packages. "
        f"Fix: put the folder that holds {top}/ or {top}.py on the path, e.g. "
        f"pythonpath = [\"src\"] under [tool.pytest.ini_options] (or pip install -e your project)"
    )


def _near(name: str, candidates: Iterable[str]) -> str:
    """ `` (did you mean 'x'?)`` for a name close to a typed one, else nothing."""
    found = difflib.get_close_matches(name, sorted(set(candidates) - {name}), n=1, cutoff=0.75)
    return f" (did you mean {found[0]!r}?)" if found else ""


def load_backend(path: str) -> type:
    """Import ``path`` and check it is a BaseXCom subclass, with errors that name the problem."""
    from airflow.sdk.bases.xcom import BaseXCom

    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        raise BackendImportError(f"XCom backend {path!r} is not a dotted path like 'pkg.module.Class'")
    try:
        module = _import(module_name, path)
    except BackendImportError:
        raise
    except Exception as exc:
        raise BackendImportError(
            f"XCom backend {path!r}: cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        backend = getattr(module, class_name)
    except AttributeError:
        classes = [name for name, value in vars(module).items() if isinstance(value, type)]
        raise BackendImportError(
            f"XCom backend {path!r}: module {module_name!r} has no attribute {class_name!r}{_near(class_name, classes)}"
        ) from None
    if not (isinstance(backend, type) and issubclass(backend, BaseXCom)):
        raise BackendImportError(
            f"XCom backend {path!r} is not a subclass of airflow.sdk.bases.xcom.BaseXCom "
            f"(got {backend!r})"
        )
    return backend


def backend_path(backend: type) -> str:
    return f"{backend.__module__}.{backend.__qualname__}"


def current_backend() -> type:
    from airflow.sdk.execution_time import xcom

    return xcom.XCom


def install_backend(backend: type) -> type:
    """Make ``backend`` the XCom class every part of Airflow uses; return the previous one."""
    import airflow.models
    import airflow.sdk.execution_time.task_runner  # noqa: F401  (binds XCom at import)
    from airflow.sdk.execution_time import xcom

    previous = xcom.XCom
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if namespace is not None and namespace.get("XCom") is previous:
            namespace["XCom"] = backend
    xcom.XCom = backend
    # airflow.models resolves XCom lazily and caches it; bind it now so it cannot be stale.
    airflow.models.__dict__["XCom"] = backend
    os.environ[_CONFIG_VAR] = backend_path(backend)
    return previous


def bound_names(backend: type) -> list[str]:
    """Every ``module.XCom`` currently bound to ``backend`` (for tests and diagnostics)."""
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if getattr(module, "__dict__", {}).get("XCom") is backend
    )


def clear_module_caches(backend: type) -> list[str]:
    """Clear ``functools`` caches at module level in the backend's module and its bases' modules.

    Backends cache configuration (Airflow's object-storage backend caches its path and
    threshold with ``@cache``); without this, one test's settings would leak into the next.
    """
    cleared = []
    for cls in backend.__mro__:
        module = sys.modules.get(cls.__module__)
        for name, value in list(getattr(module, "__dict__", {}).items()):
            if callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", None) == cls.__module__:
                value.cache_clear()
                cleared.append(f"{cls.__module__}.{name}")
    return cleared
