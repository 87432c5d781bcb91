"""The backend's settings, read from Airflow's configuration at every use.

Section ``[xcomsim]`` (or ``AIRFLOW__XCOMSIM__*`` variables). Names follow
``[common.io] xcom_objectstorage_*`` where the meaning is the same. Nothing is
cached: a cached threshold or path outlives the configuration that set it (the
reason Airflow's own object-storage backend leaks settings between tests).
"""

from __future__ import annotations

import dataclasses
import enum

from xcomsim.backend.errors import XComPolicyError

SECTION = "xcomsim"
DEFAULT_THRESHOLD = 1024 * 1024
DEFAULT_GC_GRACE = 3600.0
COMPRESSIONS = ("", "gzip", "zlib", "bz2", "lzma")


class Undeclared(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"


@dataclasses.dataclass(frozen=True)
class BackendConfig:
    """``path``: where values at or above ``threshold`` bytes go, and where push-once guards live.

    ``s3://CONN_ID@BUCKET/PREFIX`` (or ``s3://BUCKET/PREFIX`` with ``aws_default``), or
    ``redis://CONN_ID/PREFIX``. ``threshold`` -1 keeps every value inline; 0 offloads all.
    ``guard_path``: a ``redis://`` store for the guards alone, values staying at ``path``:
    a push's three guard operations are then Redis round trips instead of S3 requests.
    ``guard_path_values_below``: offloaded values smaller than this many bytes live at ``guard_path``
    too (0: none do): a small value's upload is then a Redis ``SET``, not an S3 request, which
    costs a fresh task process 6-10 ms of CPU (docs/soak.md: push by push).
    """

    path: str = ""
    guard_path: str = ""
    threshold: int = DEFAULT_THRESHOLD
    compression: str = ""
    undeclared_dags: Undeclared = Undeclared.ALLOW
    retry_replaces: bool = False  # for DAGs without a policy; a policy's own setting wins
    gc_grace_seconds: float = DEFAULT_GC_GRACE  # xcomsim gc keeps unreferenced objects younger than this
    guard_path_values_below: int = 0

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise XComPolicyError(
                f"[{SECTION}] xcom_objectstorage_compression={self.compression!r}; use one of {COMPRESSIONS}"
            )
        if self.threshold < -1:
            raise XComPolicyError(f"[{SECTION}] xcom_objectstorage_threshold={self.threshold}; use -1 or more")
        if self.guard_path_values_below < 0:
            raise XComPolicyError(f"[{SECTION}] guard_path_values_below={self.guard_path_values_below}; use 0 or more")
        if self.guard_path_values_below and (self.threshold < 0 or self.guard_path_values_below <= self.threshold):
            raise XComPolicyError(
                f"[{SECTION}] guard_path_values_below={self.guard_path_values_below} would keep no value with the "
                f"guards: only values of xcom_objectstorage_threshold={self.threshold} bytes or more are offloaded; "
                "lower the threshold or raise guard_path_values_below"
            )
        if self.guard_path_values_below and not self.guard_path:
            raise XComPolicyError(
                f"[{SECTION}] guard_path_values_below={self.guard_path_values_below} needs a guard_path "
                "(redis://CONN_ID/PREFIX) for the small values to live in"
            )

    @property
    def guards(self) -> str:
        """Where the push-once guards live."""
        return self.guard_path or self.path

    def offloads(self, size: int) -> bool:
        return self.threshold >= 0 and size >= self.threshold

    def value_path(self, size: int) -> str:
        """Where a value of ``size`` bytes is offloaded to (when it is): the guards' store below
        ``guard_path_values_below``, else ``path``."""
        return self.guard_path if self.offloads(size) and size < self.guard_path_values_below else self.path

    @property
    def value_paths(self) -> tuple[str, ...]:
        """Every store values may live in: what a row's reference may name, what gc sweeps. The guards' store
        first: gc ages its values by their guards' stamps, and a sweep deletes stale guards after its values."""
        if not self.guard_path_values_below:
            return (self.path,)
        from xcomsim.backend.stores import StoreLocation

        if self.path and StoreLocation.parse(self.path).same_place(StoreLocation.parse(self.guard_path)):
            return (self.guard_path,)  # one store: swept once
        return (self.guard_path, self.path)


def load() -> BackendConfig:
    from xcomsim.compat.names import conf

    def get(name: str, default: str) -> str:
        return str(conf.get(SECTION, name, fallback=default)).strip()

    raw_threshold = get("xcom_objectstorage_threshold", str(DEFAULT_THRESHOLD))
    try:
        threshold = int(raw_threshold)
    except ValueError:
        raise XComPolicyError(
            f"[{SECTION}] xcom_objectstorage_threshold={raw_threshold!r} is not a whole number of bytes"
        ) from None
    undeclared = get("undeclared_dags", "allow").lower()
    try:
        mode = Undeclared(undeclared)
    except ValueError:
        raise XComPolicyError(f"[{SECTION}] undeclared_dags={undeclared!r}; use 'allow' or 'deny'") from None
    grace = _seconds(get("gc_grace_seconds", str(DEFAULT_GC_GRACE)), "gc_grace_seconds")
    retry = get("retry_replaces", "false").lower()
    if retry not in ("true", "false"):
        raise XComPolicyError(f"[{SECTION}] retry_replaces={retry!r}; use true or false")
    guard_path = get("guard_path", "")
    if guard_path and not guard_path.startswith("redis://"):
        raise XComPolicyError(
            f"[{SECTION}] guard_path={guard_path!r}; use redis://CONN_ID/PREFIX (or leave it unset: the guards "
            "then live with the values, at xcom_objectstorage_path)"
        )
    raw_below = get("guard_path_values_below", "0")
    try:
        below = int(raw_below)
    except ValueError:
        raise XComPolicyError(
            f"[{SECTION}] guard_path_values_below={raw_below!r} is not a whole number of bytes"
        ) from None
    return BackendConfig(
        guard_path_values_below=below,
        retry_replaces=retry == "true",
        path=get("xcom_objectstorage_path", ""),
        guard_path=guard_path,
        threshold=threshold,
        compression=get("xcom_objectstorage_compression", "").lower(),
        undeclared_dags=mode,
        gc_grace_seconds=grace,
    )


def _seconds(raw: str, name: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not 0 <= seconds < float("inf"):
        raise XComPolicyError(f"[{SECTION}] {name}={raw!r}; use a finite number of seconds, 0 or more")
    return seconds
