"""Model-based testing: a Hypothesis state machine drives a backend and a plain Python model side by side.

Rules push, pull, claim and release, and push under injected faults (S3 errors,
lost replies, Redis drops) or with the worker crashing at any I/O point. After
every step the backend must agree with the model and the stores must hold no
dangling reference. A push whose outcome the caller cannot know (it raised after
a fault or a crash) makes its value a *candidate* for that key in the model: the
next pull settles it, and may find any of the candidates (a push that failed before
landing, then another whose worker crashed after landing: the second is there).
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from xcomsim.checks import InvariantViolation, require, same
from xcomsim.conformance.stores import observe_references
from xcomsim.scheduler.faults import FAULT_KINDS, FaultPlan, WorkerCrash, injecting
from xcomsim.strategies import sized_string

KEYS = ("k0", "k1", "k2")
CLAIMS = ("c0", "c1")
WORKERS = ("w0", "w1")
_runs = itertools.count()


def small_values() -> st.SearchStrategy[Any]:
    text = st.characters(exclude_categories=("Cs",))  # st.text()'s, without building its UTF-8 codec table
    scalars = st.one_of(st.integers(-(2**40), 2**40), st.text(text, max_size=8), st.booleans(), st.none())
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                        st.tuples(inner, inner), st.dictionaries(st.text(text, max_size=4), inner, max_size=3)),
                        max_leaves=6)  # fmt: skip


class XComMachine(RuleBasedStateMachine):
    """Build with ``XComMachine.bind(env, handle, threshold=..., claim_store=...)`` and run as a test."""

    env: Any = None
    handle: Any = None
    threshold: int | None = None
    claim_store: Any = None
    push_once: bool = True  # False: a second push may replace the value, as Airflow's own does

    @classmethod
    def bind(cls, env: Any, handle: Any, threshold: int | None, claim_store: Any,
             push_once: bool = True) -> type[XComMachine]:  # fmt: skip
        return type(cls.__name__, (cls,), {"env": env, "handle": handle, "threshold": threshold,
                                           "claim_store": claim_store, "push_once": push_once})  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.prefix = f"m{next(_runs)}_"  # each example writes fresh keys and claims on one task instance
        self.model: dict[str, Any] = {}
        self.uncertain: dict[str, list[Any]] = {}  # key -> the values whose pushes may or may not have landed
        self.holders: dict[str, str] = {}
        if self.claim_store is not None:
            for claim in CLAIMS:  # a fresh example starts with every claim free
                for worker in WORKERS:
                    self.claim_store.release(self.prefix + claim, worker)

    # ------------------------------------------------------------ helpers
    def _values(self) -> st.SearchStrategy[Any]:
        if self.threshold is None:
            return small_values()
        sizes = [max(2, self.threshold), max(64, self.threshold * 4)]
        return st.one_of(small_values(), st.builds(sized_string, st.sampled_from(sizes)))

    def _push(self, key: str, value: Any) -> None:
        with self.handle.active() as ti:
            ti.xcom_push(key=self.prefix + key, value=value)

    def _pull(self, key: str) -> Any:
        with self.handle.active() as ti:
            return ti.xcom_pull(task_ids=ti.task_id, key=self.prefix + key)

    def _fail(self, name: str, problem: str) -> None:
        raise InvariantViolation(name, [problem])

    def _pushed(self, key: str, value: Any, raised: BaseException | None) -> None:
        """Judge a push that ran to the end (it raised, or not) against the model."""
        if key in self.model:
            if raised is None and self.push_once:
                self._fail("push-once", f"a second push of {key!r} succeeded (first value {self.model[key]!r})")
            if raised is None:
                self.model[key] = value
            elif not self.push_once:  # a failed overwrite may or may not have replaced the value
                self._maybe(key, value)
            return
        if raised is None:
            self.model[key] = value
            self.uncertain.pop(key, None)
        else:
            self._maybe(key, value)

    def _maybe(self, key: str, value: Any) -> None:
        self.uncertain.setdefault(key, []).append(value)

    def _candidate(self, key: str, got: Any) -> bool:
        return any(same(got, value) for value in self.uncertain.get(key, ()))

    # ------------------------------------------------------------ rules
    @rule(key=st.sampled_from(KEYS), data=st.data())
    def push(self, key: str, data: Any) -> None:
        value = data.draw(self._values(), label="value")
        raised = None
        try:
            self._push(key, value)
        except Exception as exc:  # noqa: BLE001 - judged against the model
            raised = exc
        if raised is not None and key not in self.uncertain and (key not in self.model or not self.push_once):
            self._fail("round-trip-exact", f"the first push of {key!r} = {value!r} was refused: {raised!r}")
        self._pushed(key, value, raised)

    @rule(key=st.sampled_from(KEYS), data=st.data(),
          at=st.dictionaries(st.integers(0, 8), st.sampled_from([k for k in FAULT_KINDS if k != "crash"]),
                             min_size=1, max_size=2))  # fmt: skip
    def push_under_faults(self, key: str, data: Any, at: dict[int, str]) -> None:
        value = data.draw(self._values(), label="value")
        plan, raised = FaultPlan(at), None
        try:
            with injecting(plan):
                self._push(key, value)
        except Exception as exc:  # noqa: BLE001 - a fault may surface as anything
            raised = exc
        self._pushed(key, value, raised)

    @rule(key=st.sampled_from(KEYS), data=st.data(), io=st.integers(0, 8))
    def push_and_crash(self, key: str, data: Any, io: int) -> None:
        value = data.draw(self._values(), label="value")
        try:
            with injecting(FaultPlan({io: "crash"})):
                self._push(key, value)
        except WorkerCrash:
            if key not in self.model or not self.push_once:  # a push (or an overwrite) that may have landed
                self._maybe(key, value)
            return
        except Exception:  # noqa: BLE001 - refused before reaching that I/O: an ordinary refusal
            self._pushed(key, value, RuntimeError("refused"))
            return
        self._pushed(key, value, None)  # fewer I/O calls than ``io``: it simply ran

    @rule(key=st.sampled_from(KEYS))
    def pull(self, key: str) -> None:
        got = self._pull(key)
        if key in self.model:
            if self._candidate(key, got):
                self.model[key] = got
                self.uncertain.pop(key)
            elif not same(got, self.model[key]):
                self._fail("round-trip-exact", f"pulled {key!r} as {got!r}; the model holds {self.model[key]!r}")
            else:
                self.uncertain.pop(key, None)
        elif key in self.uncertain:
            if got is not None and not self._candidate(key, got):
                pushed = " or ".join(repr(value) for value in self.uncertain[key])
                self._fail("round-trip-exact", f"pulled {key!r} as {got!r}; only {pushed} "
                           f"{'was' if len(self.uncertain[key]) == 1 else 'were'} pushed")
            if got is not None:
                self.model[key] = got
                self.uncertain.pop(key)
        elif got is not None:
            self._fail("round-trip-exact", f"pulled {key!r} as {got!r}, but it was never pushed")

    @precondition(lambda self: self.claim_store is not None)
    @rule(claim=st.sampled_from(CLAIMS), worker=st.sampled_from(WORKERS))
    def claim(self, claim: str, worker: str) -> None:
        won = self.claim_store.try_claim(self.prefix + claim, worker) is not None
        holder = self.holders.get(claim)
        if holder is None and not won:
            self._fail("no-lost-claim", f"{worker} could not claim free claim {claim!r}")
        if holder is not None and holder != worker and won:
            self._fail("exactly-one-claim-winner", f"{worker} won claim {claim!r} while {holder} held it")
        if won:
            self.holders[claim] = worker

    @precondition(lambda self: self.claim_store is not None)
    @rule(claim=st.sampled_from(CLAIMS), worker=st.sampled_from(WORKERS))
    def release(self, claim: str, worker: str) -> None:
        released = self.claim_store.release(self.prefix + claim, worker)
        if released != (self.holders.get(claim) == worker):
            self._fail("exactly-one-claim-winner",
                       f"{worker}'s release of {claim!r} returned {released} while the holder is {self.holders.get(claim)}")  # fmt: skip
        if released:
            del self.holders[claim]

    # ------------------------------------------------------------ after every step
    @invariant()
    def stores_agree(self) -> None:
        if self.env is not None:  # this example's rows only: earlier examples' leftovers are theirs
            require("no-dangling-reference", observe_references(self.env, self.handle.run_id, self.prefix))
