"""Write README's first example ("Test my DAGs") into a project folder, as a newcomer would copy it.

    python .ci/readme_example.py README.md PROJECT_DIR

The ``toml`` block under "Three jobs" becomes the project's pyproject.toml; every block after a
``<!-- docs-test: file=PATH -->`` line in "1. Test my DAGs" is written to PATH.
"""

import re
import sys
from pathlib import Path

readme, project = Path(sys.argv[1]).read_text(), Path(sys.argv[2])
jobs = readme.split("## Three jobs", 1)[1]
first = jobs.split("### 2.", 1)[0]
toml = re.search(r"```toml\n(.*?)```", jobs, re.S)
files = re.findall(r"<!--\s*docs-test:\s*file=(\S+)\s*-->\s*\n```\w*\n(.*?)```", first, re.S)
names = [name for name, _ in files]
if toml is None or not any(n.startswith("test_") for n in names) or not any(n.startswith("dags/") for n in names):
    sys.exit(f"README's first example lost its pyproject block, DAG file or test file (found {names})")
(project / "pyproject.toml").write_text(toml.group(1))
for name, code in files:
    path = project / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(code)
print(f"README's first example: pyproject.toml, {', '.join(names)}")
