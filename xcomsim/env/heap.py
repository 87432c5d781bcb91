"""Cyclic garbage collection around the session's one-off start-up.

Importing Airflow, FastAPI, the task SDK and building the Execution API leaves about 400,000
long-lived objects. While that heap grows, CPython runs a full collection each time it has grown
by a quarter: eight passes over an ever larger heap, about 1 s of a session on 2 cores. After
it, every full collection (pytest's unconfigure runs two) scans the whole of it again, to find
nothing: modules, classes and functions live until exit.

So start-up runs with the collector off and what it built is frozen afterwards
(``gc.freeze``): later collections scan only what tests make. The price is the cyclic garbage
the imports themselves leave (about 6,000 objects, 1-2% of the heap, measured), which is kept
until exit instead of collected: collecting it first would cost another full pass.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def long_lived_startup() -> Iterator[None]:
    """Run the block with cyclic GC off, then freeze what it allocated; nested use is one block."""
    if not gc.isenabled():  # the caller's (or an outer block's) choice: leave it alone
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
