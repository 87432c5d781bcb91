"""Keeping Airflow's internals out of a user's output, and leaving the user's own alone.

Two kinds of noise come from code the user did not write: warnings Airflow's own
dependencies raise at import (``StarletteDeprecationWarning`` from the in-process
Execution API's test client) or Airflow's own code raises about itself (a provider
importing a name Airflow has moved: ``The `airflow.utils.operator_helpers.determine_kwargs`
attribute is deprecated``, which the DAG parser re-raises as a ``UserWarning`` located in
the provider's file), and, when a value fails inside Airflow's task SDK, a traceback that
runs through the SDK's supervisor, its HTTP client and the JSON encoder before it reaches
the line that raised. The warnings are ignored by message and category, and where the
same words could be the user's (their own DAG importing that moved name) by where the
warning is located too, nothing broader; the tracebacks keep every frame of the user's
code, the call into Airflow and the frame that raised, and say how many frames were hidden.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import sys
import sysconfig
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xcomsim.errors import Interrupt

# (message regex, category): warnings of Airflow's dependencies a user can do nothing about.
AIRFLOW_WARNINGS = [
    (r"Using `httpx` with `starlette\.testclient` is deprecated", "starlette.exceptions.StarletteDeprecationWarning"),
]

# (message regex, category): warnings that are noise only where Airflow's own code is their location
# (a module ``airflow.*``, or a file in Airflow's package folder: the DAG parser re-raises a file's
# warnings as UserWarning with that file as location). The same warning located in the user's DAG or
# test is theirs to fix, and is kept.
AIRFLOW_OWN_WARNINGS = [
    (r"The `airflow\.[\w.]+` attribute is deprecated", "Warning"),
]

# Modules whose frames between the user's call and the raise point are plumbing: the task SDK's
# path to the in-process Execution API, its HTTP stack, the JSON encoder, and the harness's own hooks.
INTERNAL_MODULES = (
    "airflow.sdk.execution_time",
    "airflow.sdk.api",
    "airflow.sdk.bases.xcom",
    "airflow.api_fastapi",
    "httpx",
    "httpcore",
    "starlette",
    "fastapi",
    "anyio",
    "json",
    "xcomsim.scheduler.interception",
    "xcomsim.task_context",
)


def warning_filters() -> list[str]:
    """The filters as pytest ``filterwarnings`` lines (applied inside every test), for the warning
    classes the installed dependencies have: pytest stops with a usage error on a filter naming a
    class that does not exist (``StarletteDeprecationWarning`` is missing from the starlette that
    Airflow 3.1 installs)."""
    return [f"ignore:{message}:{category}" for message, category in AIRFLOW_WARNINGS if _category(category)]


def _category(dotted: str) -> type[Warning] | None:
    """The warning class at ``module.Name``, or None when that dependency does not have it."""
    module, _, name = dotted.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    return found if isinstance(found, type) and issubclass(found, Warning) else None


def airflow_locations() -> str:
    """A ``warnings`` module regex that matches Airflow's own code as a warning's location.

    Either a dotted module name (a warning raised with Airflow's frame as its location) or a file
    path without ``.py`` under Airflow's package folder (``warn_explicit`` without a module, as
    the DAG parser re-raises). Found without importing Airflow.
    """
    spec = importlib.util.find_spec("airflow")
    found = list(spec.submodule_search_locations or ()) if spec else []
    folders = sorted({*found, *map(os.path.realpath, found)})  # as imported, and behind any symlink
    return "|".join([r"airflow\.", *(re.escape(folder + os.sep) for folder in folders)])


def ignore_airflow_warnings() -> None:
    """Install the filters process-wide (for the CLI, and for code outside a test).

    Under pytest, filters installed in ``pytest_configure`` stay in force in every test (pytest keeps
    them until the session's cleanup); the ini filters of :func:`warning_filters` and the user's own
    ``filterwarnings`` are applied over them.
    """
    import builtins

    for message, category in AIRFLOW_WARNINGS:
        cls = _category(category)
        if cls is not None:  # else that dependency is not installed, or has no such warning
            warnings.filterwarnings("ignore", message=message, category=cls)
    located = airflow_locations()
    for message, category in AIRFLOW_OWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=getattr(builtins, category), module=located)


def give_warnings_back() -> None:
    """Undo Airflow's redirection of ``warnings.showwarning`` into its log.

    Airflow's logging setup (run when Airflow is first imported) sends every warning to its
    ``py.warnings`` logger. Inside a test pytest records warnings for its summary, and a
    redirected ``showwarning`` bypasses that, so the user's own warnings of the test that
    imported Airflow would vanish into captured output.
    """
    if str(getattr(warnings.showwarning, "__module__", "")).startswith("airflow."):
        warnings.showwarning = warnings._showwarning_orig  # type: ignore[attr-defined]


def _internal(tb: types.TracebackType) -> str | None:
    name = str(tb.tb_frame.f_globals.get("__name__", ""))
    for prefix in INTERNAL_MODULES:
        if name == prefix or name.startswith(prefix + "."):
            return prefix
    return None


def trim_traceback(exc: BaseException) -> int:
    """Drop internal frames from ``exc``'s traceback, its group members and its causes; return how many.

    Of each run of internal frames the first (the call into Airflow) is kept, and so is the
    last frame of all (where the error was raised).
    """
    hidden = 0
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        hidden += _trim_one(current)
        stack.extend(getattr(current, "exceptions", ()))
        stack.extend((current.__cause__, current.__context__))
    return hidden


def _trim_one(exc: BaseException) -> int:
    entries = []
    tb = exc.__traceback__
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    kept, packages = [], set()
    for i, entry in enumerate(entries):
        package = _internal(entry)
        previous_internal = i > 0 and _internal(entries[i - 1]) is not None
        if package is None or not previous_internal or i == len(entries) - 1:
            kept.append(entry)
        else:
            packages.add(package.partition(".")[0])
    dropped = len(entries) - len(kept)
    if not dropped:
        return 0
    rebuilt = None
    for entry in reversed(kept):
        rebuilt = types.TracebackType(rebuilt, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    exc.__traceback__ = rebuilt
    exc.add_note(
        f"({dropped} frames of {', '.join(sorted(packages))} plumbing hidden by xcomsim; pytest --full-trace shows them)"
    )
    return dropped


# -- Airflow's logs of what the harness reports itself ----------------------------------------


def drop_harness_reported_logs() -> None:
    """Keep Airflow's logs of what the harness reports itself out of captured output.

    The task runner logs every exception that ends a task with its whole traceback (about 40
    lines through its own frames); for an interrupt (the run timeout, Ctrl-C) the harness's one
    line already names the run, the task and the user's line it struck in. The DAG parser logs
    a file that fails to import (see :func:`quiet_dag_parsing`). Added once to the structlog
    configuration Airflow set up at import (the in-process runner does not reconfigure it).
    """
    import structlog

    processors = list(structlog.get_config()["processors"])
    if _drop_reported not in processors:
        structlog.configure(processors=[_drop_reported, *processors])


# The loggers through which Airflow's DAG parser logs a file that fails to import, with its traceback.
_DAG_PARSER_LOGGERS = ("airflow.dag_processing", "airflow.models.dagbag")
_PARSING: list[bool] = []  # set while quiet_dag_parsing is in force


def _drop_reported(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    import structlog

    exc = event.get("exc_info")
    if exc is True:
        exc = sys.exc_info()
    if isinstance(exc, tuple):
        exc = exc[1]
    if isinstance(exc, (Interrupt, KeyboardInterrupt)):
        raise structlog.DropEvent
    if _PARSING and str(getattr(logger, "name", "") or event.get("logger", "")).startswith(_DAG_PARSER_LOGGERS):
        raise structlog.DropEvent
    return event


class _DropParser(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(_DAG_PARSER_LOGGERS)


@contextlib.contextmanager
def quiet_dag_parsing() -> Iterator[None]:
    """Silence the DAG parser's per-file error logs while a dags folder is parsed.

    The parser keeps each failure in ``import_errors``; the harness reports it once (see
    ``xcomsim.env.dag_folder``) instead of a traceback in captured stdout and again in captured
    log. The filter sits on every handler (a handler's filters see the records of every logger
    below it, including a parser module's logger made during this very parse).
    """
    quiet = _DropParser()
    loggers = [logging.root, *(x for x in logging.root.manager.loggerDict.values() if isinstance(x, logging.Logger))]
    handlers = list(dict.fromkeys(h for logger in loggers for h in logger.handlers))
    for handler in handlers:
        handler.addFilter(quiet)
    _PARSING.append(True)  # the parser's structlog loggers are dropped by _drop_reported
    try:
        yield
    finally:
        _PARSING.pop()
        for handler in handlers:
            handler.removeFilter(quiet)


def user_line(exc: BaseException) -> str | None:
    """Where ``exc`` struck in the user's code: the last frame outside Python, its packages and xcomsim.

    ``dags/slow.py:7 (time.sleep(30))``, relative to the current folder when it is below it.
    """
    import linecache

    own = Path(__file__).resolve().parent
    system = {Path(p).resolve() for p in sysconfig.get_paths().values()}
    found = None
    tb = exc.__traceback__
    while tb is not None:
        path = Path(tb.tb_frame.f_code.co_filename)
        if path.is_absolute() and not path.resolve().is_relative_to(own) and not any(
                path.resolve().is_relative_to(s) for s in system) and "site-packages" not in path.parts:  # fmt: skip
            found = (path, tb.tb_lineno)
        tb = tb.tb_next
    if found is None:
        return None
    path, line = found
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    code = linecache.getline(str(path), line).strip()
    return f"{shown}:{line}" + (f" ({code})" if code else "")
