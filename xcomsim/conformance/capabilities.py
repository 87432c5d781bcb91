"""What a backend claims, so the kit checks those guarantees and reports the rest as not claimed.

A backend declares its claims on the class, where the kit (and ``pytest --xcomsim
--xcomsim-backend=...``) finds them without any test code::

    class MyXCom(BaseXCom):
        xcomsim_contract = {
            "offload": ({"my_section.threshold": "1000"}, 1000),   # (Airflow config, threshold in bytes)
            "scoping": "xcomsim-policy",        # enforces an XComPolicy attached to the DAG
            "claim_store": "my_pkg.claims:open_store",   # zero-argument factory of a claim store
            "config": {"my_section.mode": "strict"},    # Airflow config for every contract test
            "push_once": True,                  # a second push of a key raises (Airflow's own does not)
        }

Nothing declared is not nothing tested: the kit discovers whether and where a
backend offloads (``discovery``), and a backend that refuses a second push is
held to push-once.

A test class deriving from ``XComBackendContract`` may override the fixtures of
the same names instead; the fixtures win.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

_KEYS = {"offload", "scoping", "claim_store", "config", "push_once", "sweeper", "retry_lease",
         "retry_replaces_failed_try"}  # see liveness, fencing
SCOPING_KINDS = {"xcomsim-policy"}


class ContractDeclarationError(ValueError):
    """A backend's ``xcomsim_contract`` is malformed; the message names the backend and the entry."""


@dataclass(frozen=True)
class Capabilities:
    offload: tuple[dict[str, Any], int] | None = None
    scoping: str | None = None
    claim_store: Callable[[], Any] | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    push_once: bool | None = None  # None: not declared
    retry_lease: tuple[dict[str, Any], float] | None = None  # a crashed try holds its keys this long
    # the retry rule: a retry may replace the value of the try it retries (that try failed), so even a try
    # killed after its push committed does not stop the next from pushing
    retry_replaces_failed_try: bool = False


def declared(backend: type) -> Capabilities:
    """The backend's ``xcomsim_contract``, checked; an empty ``Capabilities`` when it declares none."""
    raw = getattr(backend, "xcomsim_contract", None)
    name = f"{backend.__module__}.{backend.__qualname__}.xcomsim_contract"
    if raw is None:
        return Capabilities()
    if not isinstance(raw, Mapping):
        raise ContractDeclarationError(f"{name} must be a dict, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ContractDeclarationError(f"{name} has unknown entries {unknown}; known: {sorted(_KEYS)}")
    offload = raw.get("offload")
    if offload is not None:
        if not (isinstance(offload, (tuple, list)) and len(offload) == 2 and isinstance(offload[0], Mapping)
                and isinstance(offload[1], int) and not isinstance(offload[1], bool) and offload[1] >= 0):  # fmt: skip
            raise ContractDeclarationError(f"{name}['offload'] must be (config dict, threshold >= 0; 0: every value), "
                                           f"got {offload!r}")
        offload = (dict(offload[0]), offload[1])
    scoping = raw.get("scoping")
    if scoping is not None and scoping not in SCOPING_KINDS:
        raise ContractDeclarationError(f"{name}['scoping'] must be one of {sorted(SCOPING_KINDS)}, got {scoping!r}")
    config = raw.get("config", {})
    if not isinstance(config, Mapping):
        raise ContractDeclarationError(f"{name}['config'] must be a dict of 'section.option': value")
    push_once = raw.get("push_once")
    if push_once is not None and not isinstance(push_once, bool):
        raise ContractDeclarationError(f"{name}['push_once'] must be True or False, got {push_once!r}")
    lease = raw.get("retry_lease")
    if lease is not None:
        if not (isinstance(lease, (tuple, list)) and len(lease) == 2 and isinstance(lease[0], Mapping)
                and isinstance(lease[1], (int, float)) and not isinstance(lease[1], bool) and 0 < lease[1] <= 30):  # fmt: skip
            raise ContractDeclarationError(f"{name}['retry_lease'] must be (config dict, seconds in (0, 30]), "
                                           f"got {lease!r}")
        lease = (dict(lease[0]), float(lease[1]))
    factory = raw.get("claim_store")
    replaces_failed = raw.get("retry_replaces_failed_try", False)
    if not isinstance(replaces_failed, bool):
        raise ContractDeclarationError(f"{name}['retry_replaces_failed_try'] must be True or False, "
                                       f"got {replaces_failed!r}")  # fmt: skip
    return Capabilities(offload, scoping, _factory(name, factory) if factory else None, dict(config), push_once,
                        lease, replaces_failed)


def _factory(name: str, path: Any) -> Callable[[], Any]:
    if callable(path):
        return path
    if not isinstance(path, str) or ":" not in path:
        raise ContractDeclarationError(f"{name}['claim_store'] must be 'package.module:factory', got {path!r}")
    module, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ContractDeclarationError(f"{name}['claim_store'] = {path!r} cannot be loaded: {exc}") from None
