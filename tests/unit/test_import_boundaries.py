"""The layout holds: a pure core, and agency, broker and audit that never import one another.

Checked twice: statically (every ``import`` in every module of a package) and
at run time (a fresh interpreter importing the core loads no web, queue or
database code).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_CORE = ("flask", "pika", "sqlalchemy")

#: What each package may import of the project's packages. ``infoshare`` (the
#: composition root) may import everything.
ALLOWED: dict[str, set[str]] = {
    "keys": {"keys"},
    "protocols": {"keys", "protocols"},
    "registry": {"keys", "protocols", "registry"},
    "agency": {"keys", "protocols", "registry", "agency"},
    "broker": {"keys", "protocols", "registry", "broker"},
    "audit": {"keys", "protocols", "registry", "audit"},
}
PROJECT = set(ALLOWED) | {"infoshare"}

PROBE = """
import json, sys
import protocols, protocols.policy, protocols.loader, protocols.directory, keys
import protocols.envelope, protocols.log_format, protocols.merkle, protocols.amqp
print(json.dumps(sorted(m for m in sys.modules)))
"""


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package: str) -> None:
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules, f"{package}/ has no modules"
    bad = {str(m.relative_to(ROOT)): sorted(_imports(m) - ALLOWED[package]) for m in modules}
    assert {m: names for m, names in bad.items() if names} == {}


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from broker.router import Router\nimport audit.verifying\n"
                      "from . import sibling\n", encoding="utf-8")
    assert _imports(module) == {"broker", "audit"}


def test_core_imports_no_flask_pika_or_sqlalchemy() -> None:
    # A fresh interpreter: in this one the test session may have imported anything.
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                         text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    loaded = json.loads(out)
    assert "protocols.envelope" in loaded
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN_IN_CORE]
    assert bad == []
