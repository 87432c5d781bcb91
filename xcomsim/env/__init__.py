"""The simulated world a test runs in: Airflow home, metadata DB, Redis, S3, XCom backend.

``Simulation`` and ``Environment`` (``environment``) assemble the world's parts and run DAGs in
it, so they sit above the runner; they are loaded on first use, so importing one part
(``xcomsim.env.execution_api``, say) loads neither them nor the runner.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Environment", "Simulation"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from xcomsim.env import environment

        return getattr(environment, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
