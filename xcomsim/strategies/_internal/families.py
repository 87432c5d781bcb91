"""Value families: the dimensions along which a backend may treat values differently.

A backend nobody wrote for xcomsim may offload by byte size, by item count, by
nesting depth or by type (every ``DataFrame``), and may take some values for its
own (a dict with its marker key, a string shaped like its references). Each
family varies one dimension: ``sizes`` (bytes, ASCII and multi-byte text),
``counts`` (items, empty to thousands), ``depth`` (nesting), ``types`` (every
type Airflow's serde carries: tuples, sets, frozensets, datetimes, dates,
timedeltas, ``Decimal``, UUIDs, dataclasses, ``bytes``, numpy and pandas objects
when those packages are importable), ``constants`` (dicts and strings built from
the string constants of the backend's own module) and ``references`` (look-alikes
of the reference format a backend was seen to write).

Each family has a strategy and a few edges: values every test tries once,
whatever its example budget, so one of each kind is always seen. Which values
Airflow itself cannot carry (``bytes``, numpy arrays) is not decided here: the
kit compares every value with what Airflow's own ``BaseXCom`` gives back.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import functools
import inspect
import re
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

FAMILIES = ("sizes", "counts", "depth", "types", "constants", "references")
PROBE_MAX = (16 << 20) + 1  # the default ceiling of sizes: 16 MiB + 1, past the common thresholds
MAX_ITEMS = 5000
MAX_DEPTH = 64
_MAX_CONSTANTS = 40


@dataclasses.dataclass
class Measurement:
    """A dataclass value (serde carries dataclasses it is allowed to import)."""

    name: str
    value: float
    tags: list[str] = dataclasses.field(default_factory=list)


def allow_family_classes() -> None:
    """Let Airflow's serde rebuild the family's own classes (``Measurement``), where it can be told to."""
    from xcomsim.compat.names import serialize

    allow = getattr(sys.modules[serialize.__module__], "allow_class", None)
    if allow is not None:
        allow(Measurement)


def _optional(name: str) -> Any:
    """``name`` if the session has imported it (a backend that handles DataFrames imports pandas), else None.

    The kit requires neither numpy nor pandas, and does not import them itself (pandas and pyarrow cost
    seconds to import): a backend that never imported them treats their values as Airflow's serde does.
    """
    return sys.modules.get(name)


# ------------------------------------------------------------------ types
def type_samples() -> dict[str, Callable[[int], Any]]:
    """One factory per type family: ``n`` -> a value of that type (``n`` varies its content)."""
    utc = dt.timezone.utc
    samples: dict[str, Callable[[int], Any]] = {
        "tuple": lambda n: tuple(range(n % 7 + 1)),
        "set": lambda n: set(range(n % 7 + 1)),
        "frozenset": lambda n: frozenset(range(n % 7 + 1)),
        "datetime": lambda n: dt.datetime(2024, 1, 1, 12, 30, tzinfo=utc) + dt.timedelta(seconds=n),
        "date": lambda n: dt.date(2024, 1, 1) + dt.timedelta(days=n),
        "timedelta": lambda n: dt.timedelta(seconds=n, microseconds=250),
        "Decimal": lambda n: Decimal(f"{n}.0100"),
        "UUID": lambda n: uuid.UUID(int=n + 1),
        "dataclass": lambda n: Measurement(f"m{n}", n / 4, ["a"] * (n % 3)),
        "bytes": lambda n: bytes(range(n % 200 + 1)),
    }
    numpy = _optional("numpy")
    if numpy is not None:
        samples["numpy scalar"] = lambda n: numpy.int64(n)
        samples["numpy float"] = lambda n: numpy.float64(n / 3)
        samples["numpy array"] = lambda n: numpy.arange(n % 9 + 1, dtype="int64")
    pandas = _optional("pandas") if numpy is not None else None
    if pandas is not None:
        samples["DataFrame"] = lambda n: pandas.DataFrame({"a": list(range(n % 5 + 1)), "b": ["x"] * (n % 5 + 1),
                                                           "code": [f"{n + i:05d}" for i in range(n % 5 + 1)]})
        samples["Series"] = lambda n: pandas.Series(list(range(n % 5 + 1)), name="s")
    return samples


@functools.lru_cache(maxsize=8)
def _carried(names: tuple[str, ...]) -> frozenset[str]:
    from xcomsim.compat.names import serialize

    carried = set()
    samples = type_samples()
    for name in names:
        make = samples[name]
        try:
            serialize(make(0))
        except Exception:  # noqa: BLE001 - this Airflow has no serializer for it (bytes, numpy arrays)
            continue
        carried.add(name)
    return frozenset(carried)


def airflow_types() -> dict[str, Callable[[int], Any]]:
    """The type families this Airflow's serde carries (``bytes`` and numpy arrays are not, where it has no
    serializer for them): the ones a round trip can be held to."""
    samples = type_samples()
    carried = _carried(tuple(samples))
    return {name: make for name, make in samples.items() if name in carried}


def uncarried_types() -> dict[str, Callable[[int], Any]]:
    """The type families this Airflow's serde cannot carry (``bytes``, numpy arrays; DataFrames on Airflow 3.2
    with pandas 3): a backend may carry one itself (DataFrames to parquet), and is then held to it."""
    samples = type_samples()
    carried = _carried(tuple(samples))
    return {name: make for name, make in samples.items() if name not in carried}


def typed_values() -> st.SearchStrategy[Any]:
    samples = airflow_types()
    return st.builds(lambda name, n: samples[name](n), st.sampled_from(sorted(samples)), st.integers(0, 1000))


# ------------------------------------------------------------------ sizes, counts, depth
def text_of_size(size: int, char: str = "x") -> str:
    """A str whose serialised JSON is ``size`` UTF-8 bytes (``size + 1`` where ``char`` cannot make it exact)."""
    width = len(char.encode())
    return char * max(0, -(-(size - 2) // width))


def numbered(size: int, n: int) -> str:
    """The ``n``-th of distinct ASCII strings of serialised size ``size`` (>= 12): they differ at the start."""
    head = f"value {n}: "
    return head + "x" * max(0, size - 2 - len(head))


def sized_values(ceiling: int = 1 << 16) -> st.SearchStrategy[str]:
    """Strings of any serialised size to ``ceiling`` bytes, ASCII or 2-, 3- and 4-byte characters."""
    sizes = st.one_of(st.integers(2, 300), st.integers(2, ceiling), st.sampled_from(_powers(ceiling)))
    return st.builds(text_of_size, sizes, st.sampled_from(["x", "é", "€", "𝄞"]))


def large_sizes(ceiling: int = PROBE_MAX) -> list[int]:
    """Sizes past the limits backends write (a reader keeping 100,000 bytes, an upload refused at a megabyte),
    up to ``ceiling``: each tried once, ASCII, and one in multi-byte text."""
    return sorted({s for s in (100_001, 1_000_001, (1 << 20) + 1, ceiling) if 2 <= s <= ceiling})


def _powers(ceiling: int) -> list[int]:
    """Powers of two and ten to ``ceiling``, and one byte either side: where thresholds are written."""
    marks = {2**k for k in range(1, 25)} | {10**k for k in range(1, 8)} | {1000 * 1024, 1024 * 1024 * 5}
    return sorted(s + d for s in marks for d in (-1, 0, 1) if 2 <= s + d <= ceiling)


def counted(n: int, kind: str = "list") -> Any:
    """A container of ``n`` small items: list, tuple, dict, set or list of dicts (rows)."""
    if kind == "tuple":
        return tuple(range(n))
    if kind == "dict":
        return {f"k{i}": i for i in range(n)}
    if kind == "set":
        return set(range(n))
    if kind == "rows":
        return [{"id": i, "name": f"r{i}"} for i in range(n)]
    return list(range(n))


COUNT_KINDS = ("list", "tuple", "dict", "set", "rows")


def counted_values(max_items: int = MAX_ITEMS) -> st.SearchStrategy[Any]:
    """Containers of 0 to ``max_items`` items (built whole: thousands of drawn items would be slow to shrink)."""
    counts = st.one_of(st.integers(0, 64), st.integers(0, max_items), st.sampled_from(_powers(max_items) + [0, 1]))
    return st.builds(counted, counts, st.sampled_from(COUNT_KINDS))


def nested(depth: int, kind: str = "list") -> Any:
    """A value nested ``depth`` containers deep (``[[...[1]...]]``, dicts or tuples)."""
    value: Any = 1
    for level in range(depth):
        value = {f"d{level}": value} if kind == "dict" else (value,) if kind == "tuple" else [value]
    return value


def nested_values(max_depth: int = MAX_DEPTH) -> st.SearchStrategy[Any]:
    return st.builds(nested, st.integers(0, max_depth), st.sampled_from(["list", "dict", "tuple"]))


# ------------------------------------------------------------------ the backend's own constants
_IDENTIFIER = re.compile(r"^[A-Za-z_][\w.:-]{0,63}$")


@functools.lru_cache(maxsize=64)
def _module_constants(path: str) -> tuple[str, ...]:
    try:
        tree = ast.parse(open(path, encoding="utf-8").read())  # noqa: SIM115 - read once, cached
    except (OSError, SyntaxError, ValueError):
        return ()
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}  # fmt: skip
    found = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and id(node) not in docstrings and 0 < len(node.value) <= 200 and "\n" not in node.value]  # fmt: skip
    return tuple(dict.fromkeys(found))


def backend_constants(backend: type) -> tuple[str, ...]:
    """The string constants of the modules that define the backend and its own bases (not Airflow's, not ours).

    As Hypothesis mines a test's module for constants: a backend's marker keys (``"__snapshot__"``),
    prefixes (``"s3://"``, ``"xcom_s3://"``) and envelope fields are the values most likely to be
    taken for its own.
    """
    found: list[str] = []
    for cls in inspect.getmro(backend):
        module = sys.modules.get(cls.__module__)
        own = cls.__module__.split(".")[0] in ("airflow", "builtins", "typing") or (
            cls.__module__.startswith("xcomsim.") and not cls.__module__.startswith("xcomsim.mutants."))
        if module is None or own:
            continue
        path = getattr(module, "__file__", None)
        if path and path.endswith(".py"):
            found += _module_constants(path)
    return tuple(dict.fromkeys(found))[: _MAX_CONSTANTS * 4]


def marker_keys(constants: tuple[str, ...]) -> tuple[str, ...]:
    """The constants that could be a dict key of the backend's own (identifier-like), most marker-like first."""
    keys = [c for c in constants if _IDENTIFIER.match(c)]
    return tuple(sorted(keys, key=lambda c: (not c.startswith("_"), constants.index(c))))[:_MAX_CONSTANTS]


def constant_edges(constants: tuple[str, ...], limit: int = 20) -> list[Any]:
    """One dict per marker-like constant (the first ``limit``), its value truthy; one string per constant."""
    keys = marker_keys(constants)[:limit]
    return [{key: True, "value": 1} for key in keys] + list(constants[:limit])


# Every character UTF-8 encodes (all but surrogates): what ``st.text()`` draws, without the table of its
# ``codec="utf-8"`` that Hypothesis builds by encoding all 1.1 million code points in every new folder.
_CHARS = st.characters(exclude_categories=("Cs",))


def constant_values(constants: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """Strings and dicts built from the backend's constants (and some plain text beside them)."""
    if not constants:
        return st.nothing()
    words = st.sampled_from(constants)
    keys = st.sampled_from(marker_keys(constants) or constants)
    leaves = st.one_of(words, st.booleans(), st.integers(-3, 3), st.text(_CHARS, max_size=8), st.none())
    strings = st.one_of(words, st.builds(lambda a, b: a + b, words, st.sampled_from(["", "x", "/k", "-1", "0"])))
    return st.one_of(strings, st.dictionaries(st.one_of(keys, st.text(_CHARS, max_size=6)), leaves, min_size=1, max_size=4))


# ------------------------------------------------------------------ reference look-alikes
def _alter(text: str) -> str:
    return text[:-4] + "abcd" if len(text) > 8 else text + "/x"


def reference_variants(reference: Any) -> list[Any]:
    """Values shaped like a reference the backend wrote: the row itself, and with each string in it altered."""
    if reference is None:
        return []
    found = [reference]
    if isinstance(reference, str):
        found.append(_alter(reference))
    elif isinstance(reference, dict):
        for key, value in reference.items():
            if isinstance(value, str):
                found.append({**reference, key: _alter(value)})
        found.append({**reference, "extra": 1})
    elif isinstance(reference, list):
        found.append([_alter(v) if isinstance(v, str) else v for v in reference])
    return found


# ------------------------------------------------------------------ all of them
def family_edges(constants: tuple[str, ...] = (), reference: Any = None, *, sizes: bool = True) -> list[Any]:
    """The values every round-trip test tries once: one of each type, counts, depths, sizes, constants."""
    types = airflow_types()
    edges: list[Any] = [factory(n) for factory in types.values() for n in (0, 3)]
    edges += [counted(n, kind) for kind in COUNT_KINDS for n in (0, 1, 51, 101, 1001)]
    edges += [nested(depth, kind) for kind in ("list", "dict", "tuple") for depth in (2, 11, 33)]
    if sizes:
        edges += [text_of_size(size, char) for size in (1001, 4097) for char in ("x", "é", "𝄞")]
    return edges + constant_edges(constants) + reference_variants(reference)


def value_families(constants: tuple[str, ...] = (), reference: Any = None, *, ceiling: int = 1 << 16,
                   max_items: int = MAX_ITEMS, max_depth: int = MAX_DEPTH) -> st.SearchStrategy[Any]:  # fmt: skip
    """Every family as one strategy (``constants``: ``backend_constants``; ``reference``: a row the backend wrote)."""
    parts = [sized_values(ceiling), counted_values(max_items), nested_values(max_depth), typed_values(),
             constant_values(constants)]  # fmt: skip
    variants = reference_variants(reference)
    if variants:
        parts.append(st.sampled_from(variants))
    return st.one_of(*parts)
