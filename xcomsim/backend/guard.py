"""The push-once guard: one marker object per XCom coordinate, and the fencing of tries by their try number.

A guard records who holds its coordinate: the task instance's try (Airflow's
try number, which only grows, across retries and clears alike), the run it
belongs to (a run deleted and triggered again under the same ``run_id`` is
another run), the run's clear generation, and what that try is pushing. Every
change is atomic at the store (create-if-absent, compare-and-swap on the
object's version), so the try number is a fencing token checked where the
guard is written, and no worker's clock is read.

Who may take a guard someone else holds (the retry rule):

* the same try: never (push-once within a try);
* a later try of the same run and clear generation (a retry: Airflow started
  it, so Airflow ended the earlier try, which did not succeed): always, and it
  replaces the earlier try's value;
* a later try after a clear: only when nothing is stored, or with the
  identical value (accepted, nothing rewritten), or with ``retry_replaces``;
* an earlier try: never; it is fenced off and its late writes are refused;
* another run of the same run_id: when nothing is stored.

A push marks its guard ``writing`` right before its row, and reads it again
after: a try that lost its guard in between restores the holder's row and fails
with ``XComFencedError`` (see ``xcomsim.backend.push.Pending``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from xcomsim.backend import codec
from xcomsim.backend.config import BackendConfig, load
from xcomsim.backend.errors import XComFencedError, XComOverwriteError, XComStoreError
from xcomsim.backend.policy import policy_for
from xcomsim.backend.stores import ObjectStore

RECORDED = 4096  # a stored form up to this many characters is kept in the guard, to restore a row from
_SWAP_ATTEMPTS = 8  # concurrent takeovers of one guard: each lost swap is another try's progress


def retry_replaces(dag_id: str, config: BackendConfig | None = None) -> bool:
    """The DAG's policy's ``retry_replaces``, else the configuration's (``config``: the one the caller
    already read for this operation; a read is ~0.1 ms, seven ``conf.get``)."""
    policy = policy_for(dag_id)
    if policy is not None:
        return policy.retry_replaces
    return (config or load()).retry_replaces


@dataclasses.dataclass(frozen=True)
class Holder:
    """One try of one task instance, as Airflow identifies it: the fencing token and the run it belongs to."""

    try_number: int
    ti_id: str = ""
    run: str = ""  # the run's run_after: another run of a reused run_id has another
    clear: int = 0  # the run's clear_number: a clear starts a new generation

    @classmethod
    def of(cls, caller: Any) -> Holder:
        dag_run = getattr(getattr(caller, "_ti_context_from_server", None), "dag_run", None)
        run_after = getattr(dag_run, "run_after", None)
        return cls(int(caller.try_number or 0), str(getattr(caller, "id", "")),
                   "" if run_after is None else run_after.isoformat(),
                   int(getattr(dag_run, "clear_number", 0) or 0))  # fmt: skip


TAKE, SAME = "take", "same"  # acquire's outcomes: write the value; the identical value is already stored


class Guard:
    """The push-once marker of one coordinate: created atomically, changed only by compare-and-swap."""

    def __init__(self, store: ObjectStore, dag_id: str, run_id: str, task_id: str, map_index: int, key: str):
        self.store = store
        self.coordinate = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index, "key": key}
        self.name = codec.object_name(dag_id, run_id, task_id, map_index, key, kind="guards")
        # whether the guard carries a stamp of its store's clock, the age gc gives the values of a store that keeps
        # no times (Redis); values in S3 have their own
        self.stamps = not store.keeps_times
        self._previous: tuple[bytes, str] | None = None
        self._mine: tuple[bytes, str] | None = None  # (body, version) as this push last wrote it
        self._held = False

    # ------------------------------------------------------------------ bodies
    def _body(self, holder: Holder, state: str, **what: Any) -> bytes:
        return json.dumps({**self.coordinate, **dataclasses.asdict(holder), "state": state, **what}).encode()

    def _version(self) -> tuple[bytes, str] | None:
        return self.store.read(self.name)

    def current(self) -> dict[str, Any] | None:
        found = self._version()
        return None if found is None else json.loads(found[0])

    # ------------------------------------------------------------------ taking it
    def acquire(self, holder: Holder, *, digest: str, stored: Any, obj: str | None, replaces: bool,
                row_exists: Callable[[], bool]) -> tuple[str, dict[str, Any] | None]:  # fmt: skip
        """Take the guard for ``holder``'s push of a value (``digest``; ``stored`` form; object ``obj``).

        Returns (TAKE, the earlier holder's record or None) when the value is to be written, or
        (SAME, the earlier record) when an earlier try already stored the identical value.
        Raises XComOverwriteError when push-once keeps what is there.
        """
        recorded = stored if len(json.dumps(stored)) <= RECORDED else None
        stamp = {"stamped_at": self.store.now()} if self.stamps else {}  # its clock, for gc's ages
        body = self._body(holder, "pushing", digest=digest, object=obj, stored=recorded, **stamp)
        for _ in range(_SWAP_ATTEMPTS):
            token = self.store.create(self.name, body)
            if token is not None:
                self._mine, self._held = (body, token), True
                return TAKE, None
            existing = self._version()
            if existing is None:
                continue  # forgotten in between: create again
            earlier = json.loads(existing[0])
            decision = self._decide(earlier, holder, digest, replaces, row_exists)
            # an earlier object in a store that keeps no times is aged by its guard's stamp: the stamp stays,
            # so a retry whose value is stored elsewhere (or inline) leaves no object gc cannot age
            kept = {} if stamp or "stamped_at" not in earlier else {"stamped_at": earlier["stamped_at"]}
            if decision == SAME:  # this try now holds the key, with the earlier try's stored value
                aged = {"stamped_at": earlier["stamped_at"]} if "stamped_at" in earlier else stamp  # its object's
                taking = self._body(holder, "writing", digest=digest, object=earlier.get("object"),
                                    stored=earlier.get("stored"), **aged)  # fmt: skip
            else:
                taking = self._body(holder, "pushing", digest=digest, object=obj, stored=recorded, **stamp, **kept)
            token = self.store.swap(self.name, existing[1], taking)
            if token is not None:
                self._previous, self._mine, self._held = existing, (taking, token), True
                return decision, earlier
        raise XComStoreError(f"guard {self.name}: {_SWAP_ATTEMPTS} takeovers raced this one; try again")

    def _decide(self, earlier: dict[str, Any], me: Holder, digest: str, replaces: bool,
                row_exists: Callable[[], bool]) -> str:  # fmt: skip
        """TAKE or SAME, or raise: the retry rule of the module docstring."""
        before = int(earlier.get("try_number", 0))
        other_run = bool(me.run and earlier.get("run") and earlier["run"] != me.run)
        if other_run:  # the run was deleted and triggered again under its run_id: its rows went with it
            if not row_exists():
                return TAKE
            self._refuse("it was pushed in this run")
        if before > me.try_number:
            self._refuse(f"try {before} of the task instance holds it: this try ({me.try_number}) is over in "
                         "Airflow's view and is fenced off", fenced=True)  # fmt: skip
        if before == me.try_number:
            self._refuse("this try already pushed it")
        if not row_exists():
            return TAKE  # an earlier try that crashed between guard and row, was undone, or is still pushing
        if earlier.get("digest") == digest:
            return SAME
        if replaces or int(earlier.get("clear", 0)) == me.clear:
            return TAKE  # a retry of the try that pushed it (that try failed), or retry_replaces
        self._refuse(f"try {before} pushed it before the task instance was cleared; push-once keeps that value "
                     "(the identical value is accepted)", hint=True)  # fmt: skip

    def _refuse(self, why: str, fenced: bool = False, hint: bool = False) -> None:
        c = self.coordinate
        where = f"map_index {c['map_index']} " if c["map_index"] >= 0 else ""
        text = (f"XCom key {c['key']!r} of DAG {c['dag_id']!r}, task {c['task_id']!r} {where}in run "
                f"{c['run_id']!r} was already pushed: {why}")  # fmt: skip
        if hint:
            text += " (an XComPolicy with retry_replaces=True lets a later try replace it)"
        raise (XComFencedError if fenced else XComOverwriteError)(text)

    # ------------------------------------------------------------------ holding it
    def fence(self) -> None:
        """Right before the row: still ours? Mark it ``writing`` by compare-and-swap; raise if it was taken.

        The swap is conditional on the version this push wrote (the store told it when it wrote the guard),
        so one request both checks and marks; only a guard already marked is read first."""
        mine = None if self._mine is None else json.loads(self._mine[0])
        if mine is not None and mine.get("state") != "writing" and self._mine[1]:
            marked = json.dumps({**mine, "state": "writing"}).encode()
            token = self.store.swap(self.name, self._mine[1], marked)
            if token is None:
                raise XComFencedError(self._lost(self._version()))
            self._mine = (marked, token)
            return
        found = self._version()
        if found is None or mine is None or json.loads(found[0]) != mine:
            raise XComFencedError(self._lost(found))
        body = json.loads(found[0])
        if body.get("state") == "writing":
            self._mine = found
            return
        marked = json.dumps({**body, "state": "writing"}).encode()
        token = self.store.swap(self.name, found[1], marked)
        if token is None:
            raise XComFencedError(self._lost(self._version()))
        self._mine = (marked, token)

    def still_mine(self) -> dict[str, Any] | None:
        """After the row: None if this push still holds the guard, else the holder's record (or {} if none)."""
        found = self._version()
        if found is not None and self._mine is not None and json.loads(found[0]) == json.loads(self._mine[0]):
            return None
        return {} if found is None else json.loads(found[0])

    def _lost(self, found: tuple[bytes, str] | None) -> str:
        holder = json.loads(found[0]) if found else {}
        mine = json.loads(self._mine[0]).get("try_number") if self._mine else None
        if not holder:
            who, why = "nobody (deleted)", "its guard is gone"
        elif holder.get("try_number") == mine:
            who, why = f"another push of this try ({mine})", "push-once keeps that one"
        else:
            who, why = f"try {holder.get('try_number')}", "this try is over in Airflow's view"
        return (f"push of XCom {self.coordinate['key']!r} lost its push-once guard to {who} of the task instance "
                f"before its row was written: {why}; nothing of it is kept")

    def forget(self, holder: Holder) -> None:
        """A try deleted its XCom (Airflow's clear before a retry, with retry_replaces): the guard goes too,
        unless a later try holds it by then (deleted only at the version judged)."""
        found = self._version()
        if found is not None and int(json.loads(found[0]).get("try_number", 0)) <= holder.try_number:
            self.store.delete_if(self.name, found[1])

    def release(self) -> None:
        """Undo ``acquire`` after a failed write, so nothing is left half-done (only while it is still ours)."""
        if not self._held:
            return
        self._held = False
        found = self._version()
        if found is None or self._mine is None or json.loads(found[0]) != json.loads(self._mine[0]):
            return  # taken by a later try meanwhile: theirs now
        if self._previous is None:
            self.store.delete(self.name)
        else:
            self.store.swap(self.name, found[1], self._previous[0])


def row_exists(dag_id: str, run_id: str, task_id: str, map_index: int, key: str) -> bool:
    """Whether the ``xcom`` table has a row for the coordinate (asked through the supervisor)."""
    from airflow.sdk.execution_time.comms import GetXCom, GetXComCount, XComCountResponse, XComResult
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    row = SUPERVISOR_COMMS.send(GetXCom(key=key, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index))
    if isinstance(row, XComResult) and row.value is not None:
        return True
    # A stored None reads like no row: count rows of the task's key (any map index); none means none.
    count = SUPERVISOR_COMMS.send(GetXComCount(key=key, dag_id=dag_id, task_id=task_id, run_id=run_id))
    return not (isinstance(count, XComCountResponse) and count.len == 0)
