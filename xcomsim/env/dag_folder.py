"""Finding a DAG by id in the dags folder, with errors that say what went wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xcomsim.errors import DagImportError, DagNotFoundError


class DagFolder:
    """Parses the folder once per session; DAG objects are reused across tests like dag.test() does."""

    def __init__(self, path: Path):
        self.path = path
        self._bag: Any = None

    def _parse(self) -> Any:
        if self._bag is None:
            from xcomsim.compat.dagbag import bundle_dag_bag

            self._bag = bundle_dag_bag(self.path, "dags-folder")
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
