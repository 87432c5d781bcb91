"""The Celery configuration of the soak's workers: the reference backend's, warmed before the fork.

A deployment with a configuration of its own imports ``xcomsim.backend.warm``
from its module (docs/backend.md); the soak's workers do exactly that. With
``$XCOMSIM_PROFILE_TASKS`` set they also profile every task process they fork,
from the fork to its last push (``xcomsim.soak.probe.profile_forked_tasks``).
"""

from __future__ import annotations

from xcomsim.backend.warm import CELERY_CONFIG
from xcomsim.soak.probe import profile_forked_tasks

profile_forked_tasks()

__all__ = ["CELERY_CONFIG"]
