"""Environment variables set for a while and then put back exactly as they were."""

from __future__ import annotations

import os
from collections.abc import Mapping


class ScopedEnv:
    """Remembers the first value each variable had, so ``restore`` undoes any number of ``set`` calls."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, values: Mapping[str, str]) -> None:
        for name, value in values.items():
            self._saved.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()
