import sys
from pathlib import Path

# Scenario tests import constants from the DAG files they run.
sys.path.insert(0, str(Path(__file__).parent / "dags"))
