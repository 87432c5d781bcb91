"""The simulated world a test runs in: Airflow home, metadata DB, Redis, S3, XCom backend."""

from __future__ import annotations

from xcomsim.env.environment import Environment, Simulation

__all__ = ["Environment", "Simulation"]
