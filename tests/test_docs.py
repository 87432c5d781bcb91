"""Every code block in README.md and docs/*.md runs, so the docs cannot rot.

- ``python``: all blocks run in one ``pytest --xcomsim`` session (pytester, a subprocess).
  A block holding tests is a test module; any other block runs inside a test that has an
  environment (``xcomsim_env``). A ``<!-- docs-test: file=PATH -->`` line before a block
  writes it to PATH in the session's folder (``dags/`` is the dags folder) and runs it there;
  ``only=Class::test`` runs just that test of the block (for the kit's mixin, whose full
  run is ``tests/test_conformance_*.py``).
- ``bash``: every command is parsed against the real thing: ``pytest`` options against
  ``pytest --help`` with this plugin loaded, ``xcomsim`` against its argparse parser,
  ``python -m`` modules must import, ``pip install -e '.[extra]'`` extras must exist.
- ``toml`` and ``ini``: parsed; pytest ini names and ``[xcomsim]`` options must be real.
- ``text``: output and anything else that does not run.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"python", "bash", "toml", "ini", "text"}
_DIRECTIVE = re.compile(r"<!--\s*docs-test:(.*?)-->")

# Its subject does not vary with the interpreter: CI runs it on one Python only.
pytestmark = pytest.mark.once


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    directives: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def slug(self) -> str:
        return f"{self.page.stem.lower().replace('-', '_')}_l{self.line}"


def blocks_of(page: Path) -> list[Block]:
    found: list[Block] = []
    lines = page.read_text().split("\n")
    i = 0
    while i < len(lines):
        if not lines[i].startswith("```"):
            i += 1
            continue
        language = lines[i][3:].strip()
        directives: dict[str, str] = {}
        before = i - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        match = _DIRECTIVE.search(lines[before]) if before >= 0 else None
        if match:
            directives = dict(item.split("=", 1) for item in match.group(1).split())
        end = i + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        assert end < len(lines), f"{page.name}:{i + 1}: a code block that never closes"
        found.append(Block(page, i + 1, language, "\n".join(lines[i + 1 : end]) + "\n", directives))
        i = end + 1
    return found


BLOCKS = [block for page in PAGES for block in blocks_of(page)]


def _of(language: str) -> list[Block]:
    return [block for block in BLOCKS if block.language == language]


def test_every_block_names_a_language_this_suite_knows():
    unknown = [f"{b.where} ```{b.language}" for b in BLOCKS if b.language not in LANGUAGES]
    assert not unknown, f"mark these python, bash, toml, ini or text: {unknown}"


def test_readme_is_a_front_page_with_the_ci_command():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250, "README.md is a front page; depth goes to docs/"
    # .ci/run takes the first block after the marker as the suite's command.
    after = text.split("<!-- test-command -->", 1)[1]
    command = after.split("```bash\n", 1)[1].split("```", 1)[0].strip()
    assert command == "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest -n auto --dist worksteal"


def test_readmes_airflow_matrix_is_the_last_runs_record():
    """README's matrix table is rendered from docs/airflow-matrix.json (what .ci/airflow-matrix wrote),
    never typed: ``python -m xcomsim.compat.matrix --readme`` makes them agree."""
    import json

    from xcomsim.compat import matrix

    record = json.loads((ROOT / "docs" / "airflow-matrix.json").read_text())
    shown = matrix.readme_section((ROOT / "README.md").read_text())
    assert shown is not None, "README.md has lost its generated matrix section"
    assert shown == matrix.table(record), "README's matrix table is not docs/airflow-matrix.json's: rerun --readme"


def test_pyproject_allows_exactly_the_versions_the_matrix_passed():
    """Every cell of the last matrix run is admitted by xcomsim's own requirement on apache-airflow, and the
    newest one is its upper bound: a version the matrix never ran is not claimed."""
    import json

    from packaging.requirements import Requirement

    requirement = next(Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
                       if Requirement(r).name == "apache-airflow")  # fmt: skip
    cells = json.loads((ROOT / "docs" / "airflow-matrix.json").read_text())["cells"]
    versions = {cell["airflow"] for cell in cells}
    assert all(cell["result"].endswith("(exit 0)") or cell["result"] == "passed" for cell in cells), cells
    assert all(requirement.specifier.contains(v) for v in versions), (str(requirement.specifier), versions)
    upper = [s.version for s in requirement.specifier if s.operator in ("<=", "==")]
    assert upper == [max(versions, key=lambda v: tuple(map(int, v.split("."))))], (str(requirement.specifier), versions)


def _prose(page: Path) -> str:
    """The page without its code blocks (output pasted from a run lives in ``text`` blocks) and without
    README's Airflow matrix table (rendered from a run's record, and checked against it below)."""
    from xcomsim.compat import matrix

    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    generated = matrix.readme_section(text)
    return text.replace(generated, "") if generated else text


def test_the_suites_own_counts_and_times_are_not_typed_into_prose():
    """They drift with every test added (docs once said 208 passed of a 535-test suite): CI's log has them."""
    typed = re.compile(r"\b\d+ (passed|failed|skipped|xfailed)\b|\bsuite\b[^.]*\b\d+ min\b")
    found = [f"{page.relative_to(ROOT)}: {m.group(0)!r}" for page in PAGES for m in typed.finditer(_prose(page))]
    assert not found, found


def test_every_docs_page_is_in_the_index():
    index = (ROOT / "docs" / "index.md").read_text()
    missing = [p.name for p in PAGES if p.parent.name == "docs" and p.name != "index.md" and f"({p.name})" not in index]
    assert not missing, f"docs/index.md does not link {missing}"


# -- python: one pytest --xcomsim session runs them all ---------------------------------------


def _defines_tests(code: str) -> bool:
    return bool(re.search(r"^(def test_|class Test)", code, re.MULTILINE))


def _wrapped(block: Block, path: str) -> str:
    """A test that runs a block (or a file a block wrote) as a script, in a test's environment."""
    return (
        "import runpy\n\n\n"
        f"def test_{block.slug}(xcomsim_env):\n"
        f"    runpy.run_path({path!r}, run_name='__docs__')  # {block.where}\n"
    )


def test_python_blocks_run(docs_pytester: pytest.Pytester):
    targets, origin = [], {}
    for block in _of("python"):
        name = f"test_docs_{block.slug}.py"
        if "file" in block.directives:
            written = docs_pytester.path / block.directives["file"]
            written.parent.mkdir(parents=True, exist_ok=True)
            written.write_text(block.code)
            if _defines_tests(block.code):
                name = written.name
            else:
                (docs_pytester.path / name).write_text(_wrapped(block, str(written)))
        elif _defines_tests(block.code):
            (docs_pytester.path / name).write_text(f"# {block.where}\n{block.code}")
        else:
            script = docs_pytester.path / "scripts" / f"{block.slug}.py"
            script.parent.mkdir(exist_ok=True)
            script.write_text(block.code)
            (docs_pytester.path / name).write_text(_wrapped(block, str(script)))
        only = block.directives.get("only")
        targets.append(f"{name}::{only}" if only else name)
        origin[name] = block.where
    (docs_pytester.path / "dags").mkdir(exist_ok=True)
    result = docs_pytester.runpytest_subprocess(
        "--xcomsim", "--xcomsim-dags=dags", "-p", "no:randomly", "-p", "no:cacheprovider", "-rfEs", *targets,
        timeout=600,
    )
    outcomes = result.parseoutcomes()
    summary = "\n".join(line for line in result.outlines if line.startswith(("FAILED", "ERROR", "SKIPPED")))
    assert result.ret == 0 and not outcomes.get("skipped"), (
        f"doc blocks failed (file -> block: {origin}):\n{summary}\n" + "\n".join(result.outlines[-60:])
    )
    assert outcomes.get("passed", 0) >= len(targets)


@pytest.fixture
def docs_pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in list(os.environ):
        if name.startswith(("AIRFLOW", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # this checkout's xcomsim, as the docs describe it
    return pytester


# -- bash: every command parsed against the real options --------------------------------------


@pytest.fixture(scope="module")
def pytest_help(tmp_path_factory: pytest.TempPathFactory) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "PYTEST_ADDOPTS", "PYTEST_XDIST_"))}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path_factory.mktemp("help"), env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "--xcomsim-backend" in proc.stdout and "--benchmark-only" in proc.stdout
    return proc.stdout


def _commands(code: str) -> list[list[str]]:
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        current: list[str] = []
        for token in shlex.split(line, comments=True):
            if token in ("&&", "||", ";", "|"):
                commands.append(current)
                current = []
            else:
                current.append(token)
        commands.append(current)
    return [c for c in commands if c]


def _check_pytest(args: list[str], help_text: str) -> list[str]:
    problems = []
    long_options = set(re.findall(r"(--[\w-]+)", help_text))
    for arg in args:
        if arg.startswith("--"):
            if arg.split("=", 1)[0] not in long_options:
                problems.append(f"pytest has no option {arg.split('=', 1)[0]}")
        elif "/" in arg and not arg.startswith("-") and not (ROOT / arg).exists():
            problems.append(f"{arg} is not a path in this repository")
    return problems


def _check_command(tokens: list[str], help_text: str) -> list[str]:
    from xcomsim.cli import build_parser

    program, args = Path(tokens[0]).name, tokens[1:]
    if program == "pytest":
        return _check_pytest(args, help_text)
    if program in ("python", "python3") and args[:1] == ["-m"]:
        module, rest = args[1], args[2:]
        if module == "pytest":
            return _check_pytest(rest, help_text)
        if module == "xcomsim.cli":
            program, args = "xcomsim", rest
        elif importlib.util.find_spec(module) is None:
            return [f"no module {module}"]
        else:
            return []
    if program == "xcomsim":
        try:
            build_parser().parse_args(args)
        except SystemExit:
            return [f"xcomsim does not accept {' '.join(args)}"]
        return []
    if program == "pip" and args[:1] == ["install"]:
        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        asked = [e for a in args if a.startswith(".[") for e in a[2:-1].split(",")]
        return [f"pyproject.toml has no extra {e!r}" for e in asked if e not in extras]
    if program == "bash" and args:  # a script of this repository (CI's)
        return [] if (ROOT / args[0]).is_file() else [f"{args[0]} is not a script in this repository"]
    if program == "pytest-benchmark":
        found = shutil.which(program) or (Path(sys.executable).parent / program).exists()
        return [] if found else ["pytest-benchmark is not installed"]
    return [f"{program}: not a command this suite can check; mark the block text"]


@pytest.mark.parametrize("block", _of("bash"), ids=lambda b: b.where)
def test_bash_commands_parse(block: Block, pytest_help: str, capsys: pytest.CaptureFixture[str]):
    problems = [f"{' '.join(c)}: {p}" for c in _commands(block.code) for p in _check_command(c, pytest_help)]
    capsys.readouterr()  # argparse's usage text of a refused command
    assert not problems, problems


# -- toml and ini -----------------------------------------------------------------------------


@pytest.mark.parametrize("block", _of("toml"), ids=lambda b: b.where)
def test_toml_blocks_name_real_ini_options(block: Block, pytest_help: str):
    document = tomllib.loads(block.code)
    options = document["tool"]["pytest"]["ini_options"]
    known = set(re.findall(r"^  ([\w-]+) \(", pytest_help, re.MULTILINE))
    assert set(options) <= known, sorted(set(options) - known)


def _backend_option_names() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "xcomsim" / "backend").glob("*.py"))


@pytest.mark.parametrize("block", _of("ini"), ids=lambda b: b.where)
def test_ini_blocks_parse_as_airflow_reads_them(block: Block):
    parser = configparser.ConfigParser(interpolation=None)  # Airflow's: no inline comments
    parser.read_string(block.code)
    source = _backend_option_names()
    for section in parser.sections():
        for option, value in parser.items(section):
            assert " #" not in value, f"[{section}] {option}: Airflow keeps an inline comment in the value"
            if section == "xcomsim":
                assert f'"{option}"' in source, f"xcomsim.backend reads no [xcomsim] {option}"
            if (section, option) == ("core", "xcom_backend"):
                module, _, name = value.rpartition(".")
                assert importlib.util.find_spec(module) is not None, value
