"""xcomsim: a testing and simulation harness for Airflow DAGs that depend on XCom.

Importing this package must stay cheap and must not import Airflow: the pytest
plugin imports it while the harness may still be switched off.
"""

from __future__ import annotations

__version__ = "0.1.0"
