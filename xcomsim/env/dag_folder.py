"""Finding a DAG by id in the dags folder, with errors that say what went wrong."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from xcomsim.errors import DagImportError, DagNotFoundError
from xcomsim.noise import quiet_dag_parsing


class DagFileWarning(UserWarning):
    """A file in the dags folder failed to import (said once a session; running its DAG is an error)."""


class DagFolder:
    """Parses the folder once per session; DAG objects are reused across tests like dag.test() does."""

    def __init__(self, path: Path):
        self.path = path
        self._bag: Any = None

    def _parse(self) -> Any:
        if self._bag is None:
            from xcomsim.compat.dagbag import bundle_dag_bag

            with quiet_dag_parsing():
                self._bag = bundle_dag_bag(self.path, "dags-folder")
            for file, error in sorted(self._bag.import_errors.items()):  # once a session, not in every test's log
                path = self.path / file
                lines = re.findall(rf'File "{re.escape(str(path))}", line (\d+)', error)
                warnings.warn_explicit(DagFileWarning(f"xcomsim: DAG file {file} failed to import: "
                                                      f"{_last_line(error)}; its DAGs cannot run"),
                                       DagFileWarning, str(path), int(lines[-1]) if lines else 1)  # fmt: skip
        return self._bag

    def get(self, dag_id: str) -> Any:
        bag = self._parse()
        dag = bag.dags.get(dag_id)
        if dag is not None:
            return dag
        if bag.import_errors:
            details = "\n".join(
                f"  {file}: {_last_line(error)}" for file, error in sorted(bag.import_errors.items())
            )
            raise DagImportError(
                f"DAG {dag_id!r} not found in {self.path}, and these DAG files failed to import:\n{details}"
            )
        known = ", ".join(sorted(bag.dags)) or "none"
        raise DagNotFoundError(f"no DAG with id {dag_id!r} in {self.path} (DAGs found: {known})")

    def all(self) -> list[Any]:
        """Every DAG that imported cleanly (a run stores them all, so it can reach any of them)."""
        return list(self._parse().dags.values())

    def import_errors(self) -> dict[str, str]:
        return dict(self._parse().import_errors)


def _last_line(traceback_text: str) -> str:
    lines = [line for line in traceback_text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else traceback_text
