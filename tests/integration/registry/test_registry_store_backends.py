"""The store's tests from tests/unit/registry, run on SQLite and on PostgreSQL.

The functions are loaded from the unit test module by path and collected
here, where ``database_url`` is parametrised over both databases.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_CASES = Path(__file__).resolve().parents[2] / "unit" / "registry" / "test_registry_store.py"
_spec = importlib.util.spec_from_file_location("registry_store_cases", _CASES)
assert _spec is not None and _spec.loader is not None
_cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cases)

pytestmark = pytest.mark.integration

loaded = _cases.loaded
globals().update({name: value for name, value in vars(_cases).items()
                  if name.startswith("test_")})
