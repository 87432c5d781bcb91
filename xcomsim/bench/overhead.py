"""What the harness adds to a raw client call while no scheduled worker runs.

The race scheduler's interception hooks (``xcomsim.scheduler.interception``) are
class-level and stay installed for the whole process once any race test ran, so
every Redis command, botocore call and SQL connection borrow of every later
test passes through them. Idle (no worker scheduled in the calling thread) they
must cost next to nothing. This measures a Redis GET, an S3 HeadObject and a SQL
``SELECT 1`` with the hooks installed but idle against the same calls with the
original methods put back, alternating so drift on a
shared machine hits both arms alike: call by call, the original methods are
swapped in for one call and the hooks for the next.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Overhead:
    call: str
    raw_us: float
    hooked_us: float

    @property
    def percent(self) -> float:
        return (self.hooked_us / self.raw_us - 1) * 100


def _wrapped_methods() -> list[tuple[Any, str]]:
    import redis
    from botocore.client import BaseClient
    from sqlalchemy.engine.default import DefaultDialect
    from sqlalchemy.pool import Pool

    from xcomsim.scheduler.interception import STATEMENT_METHODS
    from xcomsim.task_context import _TaskComms

    statements = [(DefaultDialect, name) for name in STATEMENT_METHODS]
    return [(redis.Redis, "execute_command"), (BaseClient, "_make_api_call"), (Pool, "connect"), *statements,
            (_TaskComms, "send")]  # fmt: skip


@contextlib.contextmanager
def hooks_removed() -> Iterator[None]:
    """Put the original client methods back for the block."""
    swapped = []
    for owner, name in _wrapped_methods():
        wrapper = owner.__dict__.get(name)
        original = getattr(wrapper, "__xcomsim_original__", None)
        if original is not None:
            setattr(owner, name, original)
            swapped.append((owner, name, wrapper))
    try:
        yield
    finally:
        for owner, name, wrapper in swapped:
            setattr(owner, name, wrapper)


def io_points(action: Callable[[], object]) -> int:
    """How many interception points ``action`` passes in this thread."""
    from xcomsim.scheduler import interception

    seen: list[str] = []
    interception.set_hook(lambda label, preemptible: seen.append(label))
    try:
        action()
    finally:
        interception.set_hook(None)
    return len(seen)


def compare(call: str, action: Callable[[], object], calls: int = 2000) -> Overhead:
    """Median microseconds of ``action`` with the hooks removed and installed-but-idle, call by call alternately."""
    from xcomsim.scheduler import interception

    interception.install()
    with hooks_removed():
        if io_points(action):
            raise RuntimeError(f"{call}: the raw arm still passes the interception hooks")
    if not io_points(action):
        raise RuntimeError(f"{call}: the hooked arm passes no interception point; nothing would be measured")
    action()  # warm
    raw, hooked = [], []
    for _ in range(calls):
        with hooks_removed():
            started = time.perf_counter()
            action()
            raw.append(time.perf_counter() - started)
        started = time.perf_counter()
        action()
        hooked.append(time.perf_counter() - started)
    return Overhead(call, statistics.median(raw) * 1e6, statistics.median(hooked) * 1e6)


def measure(env: Any, calls: int = 2000) -> list[Overhead]:
    """Raw calls to ``env``'s stores, then a claim and a whole XCom pull (slower calls get fewer rounds).

    ``SELECT 1`` on an in-memory SQLite DB is the cheapest call there is, so it shows the
    per-statement cost of the SQL hook at its largest.
    """
    from sqlalchemy import text

    from xcomsim.bench.latency import claim_stores, payload, probes

    env.redis.set("xcomsim-bench-overhead", b"x" * 100)
    env.s3.put_object(Bucket=env.bucket, Key="xcomsim-bench-overhead", Body=b"x" * 100)
    claims = claim_stores(env)["sql"]
    claim_ids = iter(range(10**9))

    def select_one() -> None:
        with env.engine.connect() as conn:
            conn.execute(text("SELECT 1")).scalar_one()

    results = [
        compare("redis GET", lambda: env.redis.get("xcomsim-bench-overhead"), calls),
        compare("S3 HeadObject", lambda: env.s3.head_object(Bucket=env.bucket, Key="xcomsim-bench-overhead"),
                max(1, calls // 10)),
        compare("SQL SELECT 1 (in-memory SQLite)", select_one, calls),
        compare("SQL claim (try_claim)", lambda: claims.try_claim(f"overhead-{next(claim_ids)}", "w0"), calls // 2),
    ]  # fmt: skip
    with probes(env) as (probe,):
        key = probe.pushed(payload(1024))
        results.append(compare("XCom pull, 1 KiB (Execution API)", lambda: probe.pull(key), max(1, calls // 20)))
    return results
