"""What one simulated environment is made of, independent of where it is configured.

The pytest plugin fills this from command-line options, ini values and markers;
library users build it directly.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path

from xcomsim.errors import ConfigError

DEFAULT_BACKEND = "xcomsim.backend.ExclusiveXCom"
AIRFLOW_BACKEND = "airflow.sdk.bases.xcom.BaseXCom"
DEFAULT_BUCKET = "xcomsim"


@dataclasses.dataclass(frozen=True)
class HarnessSettings:
    """Options for one simulated environment.

    ``backend`` is the dotted path of the XCom backend class under test;
    ``dags_folder`` is where DAGs named by id are looked up (``None``: an empty
    temporary folder); ``bucket`` is the S3 bucket created for every test;
    ``config`` is Airflow configuration for one test, ``{"section.option": value}``
    (set as ``AIRFLOW__SECTION__OPTION`` while the test runs).

    ``db_url``, ``redis_url`` and ``s3_endpoint`` replace the embedded stores
    (in-memory SQLite; fakeredis and moto, each in a child process) with real servers for the
    whole session; ``None`` keeps the embedded one.
    """

    backend: str = DEFAULT_BACKEND
    dags_folder: Path | None = None
    bucket: str = DEFAULT_BUCKET
    run_timeout: float = 300.0
    config: Mapping[str, object] = dataclasses.field(default_factory=dict)
    db_url: str | None = None
    redis_url: str | None = None
    s3_endpoint: str | None = None

    def __post_init__(self) -> None:
        if not self.backend or "." not in self.backend:
            raise ConfigError(
                f"xcomsim backend {self.backend!r} is not a dotted path such as 'my_pkg.xcom.MyXCom'"
            )
        if not _is_valid_bucket(self.bucket):
            raise ConfigError(
                f"xcomsim bucket {self.bucket!r} is not a valid S3 bucket name "
                "(3-63 chars of lowercase letters, digits, '.' and '-')"
            )
        if self.run_timeout <= 0:
            raise ConfigError(f"xcomsim run timeout must be positive, got {self.run_timeout!r}")
        self.config_env()  # validates
        for name, schemes, example in _SERVICES:
            url = getattr(self, name)
            if url is not None and url.partition("://")[0].partition("+")[0] not in schemes:
                raise ConfigError(f"xcomsim {name.replace('_', ' ')} {_masked(url)!r} is not a URL such as {example}")

    @property
    def real_services(self) -> list[str]:
        """Which stores are real servers: ``["postgresql", "redis", "s3"]``, or a part of it."""
        names = [("postgresql", self.db_url), ("redis", self.redis_url), ("s3", self.s3_endpoint)]
        return [name for name, url in names if url]

    def config_env(self, bucket: str | None = None) -> dict[str, str]:
        """``config`` as the environment variables Airflow reads.

        ``bucket``: the test's real bucket when it differs from ``self.bucket`` (a
        shared S3 endpoint gives every test its own); values naming
        ``s3://[conn@]<self.bucket>``, or that are exactly ``<self.bucket>`` (a
        backend's own ``bucket`` option), are pointed at it.
        """
        if not isinstance(self.config, Mapping):
            raise ConfigError(f"xcomsim config must map 'section.option' to a value, got {self.config!r}")
        env = {}
        for name, value in self.config.items():
            section, dot, option = str(name).rpartition(".")  # sections may hold dots: common.io
            if not dot or not section or not option:
                raise ConfigError(f"xcomsim config key {name!r} is not 'section.option'")
            text = str(value)
            if bucket and bucket != self.bucket and text == self.bucket:
                text = bucket
            elif bucket and bucket != self.bucket:
                text = re.sub(rf"(s3://(?:[^@/]*@)?){re.escape(self.bucket)}(?=/|$)", rf"\g<1>{bucket}", text)
            env[f"AIRFLOW__{section.replace('.', '_').upper()}__{option.upper()}"] = text
        return env

    def replace(self, **changes: object) -> HarnessSettings:
        """Return a copy with ``changes`` applied; unknown names are a ConfigError."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            known = ", ".join(f.name for f in dataclasses.fields(self))
            raise ConfigError(f"unknown xcomsim setting(s) {sorted(unknown)}; known: {known}")
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


_SERVICES = [
    ("db_url", {"postgresql"}, "postgresql+psycopg://user:password@127.0.0.1:5432/postgres"),
    ("redis_url", {"redis", "rediss"}, "redis://127.0.0.1:6379/0"),
    ("s3_endpoint", {"http", "https"}, "http://127.0.0.1:9000"),
]
# Settings of the session's servers: a marker cannot change them for one test.
SESSION_ONLY = frozenset({"db_url", "redis_url", "s3_endpoint"})


def _masked(url: str) -> str:
    from xcomsim.env.naming import mask_url

    return mask_url(url)


def _is_valid_bucket(name: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789.-")
    return 3 <= len(name) <= 63 and set(name) <= allowed and name[0].isalnum() and name[-1].isalnum()


def settings_from_options(values: dict[str, object], root: Path, invocation_dir: Path | None = None) -> HarnessSettings:
    """Build settings from option strings (command line or ini); empty values keep defaults.

    A relative path typed on the command line is taken, as pytest takes its own path
    options, from ``invocation_dir`` (where pytest was started), then from ``root``
    (pytest's rootdir); one from the ini file (``invocation_dir=None``) from ``root``,
    so the same ini works wherever pytest is started.
    """
    changes: dict[str, object] = {}
    if values.get("backend"):
        changes["backend"] = str(values["backend"]).strip()
    if values.get("dags_folder"):
        changes["dags_folder"] = resolve_folder("dags folder", str(values["dags_folder"]), root, invocation_dir)
    if values.get("bucket"):
        changes["bucket"] = str(values["bucket"])
    if values.get("run_timeout"):
        try:
            changes["run_timeout"] = float(str(values["run_timeout"]))
        except ValueError:
            raise ConfigError(f"xcomsim run timeout {values['run_timeout']!r} is not a number of seconds") from None
    for option, name in (("db", "db_url"), ("redis", "redis_url"), ("s3_endpoint", "s3_endpoint")):
        if values.get(option):
            changes[name] = str(values[option]).strip()
    return HarnessSettings().replace(**changes)


def resolve_folder(what: str, text: str, root: Path, invocation_dir: Path | None = None) -> Path:
    """An existing folder for ``text``: absolute, or relative to ``invocation_dir`` then ``root``.

    The error names every candidate tried, so a path typed from a subfolder is easy to fix.
    """
    typed = Path(text).expanduser()
    candidates = [typed] if typed.is_absolute() else [base / typed for base in (invocation_dir, root) if base]
    candidates = list(dict.fromkeys(c.resolve() for c in candidates))
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = " nor ".join(repr(str(c)) for c in candidates)
    hint = "" if typed.is_absolute() else " (relative paths are taken from where pytest was started, then from the rootdir)"
    if len(candidates) == 1:
        raise ConfigError(f"xcomsim {what} {tried} does not exist or is not a directory{hint}")
    raise ConfigError(f"xcomsim {what} {text!r}: neither {tried} is a directory{hint}")
