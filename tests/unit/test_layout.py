"""The layout keeps its promises: the pure packages import no Faust, Kafka client, agent, view or table;
every public class says what it is; the models' doctests pass."""
from __future__ import annotations

import ast
import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Packages that run without a broker: the pipeline's logic, testable on its own.
PURE = ["app/records.py", "app/capture", "app/flows", "app/detect", "app/export", "app/api", "app/query"]
#: What the pure packages may not import: the Faust shell, the Kafka client, agents, views and tables.
FORBIDDEN = ("faust", "mode", "aiokafka", "aiohttp", "agents", "web", "tables", "app.main", "app.topics",
             "app.cli", "app.runtime")


def _modules(paths):
    for rel in paths:
        p = ROOT / rel
        yield from ([p] if p.suffix == ".py" else sorted(p.rglob("*.py")))


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, at any depth (a function's lazy import counts too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names
                                                   if node.module == "app"]
    return out


def test_the_pure_packages_import_no_faust_kafka_agents_views_or_tables():
    bad = [f"{path.relative_to(ROOT)}:{line} imports {name}" for path in _modules(PURE)
           for line, name in _imports(path)
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, "\n".join(bad)


def test_the_contract_would_catch_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from app.main import settings\n    import aiokafka.errors\n")
    names = [n for _, n in _imports(bad)]
    assert "app.main" in names and "aiokafka.errors" in names


def test_every_public_class_has_a_docstring():
    missing = []
    for path in _modules(["app", "agents", "web", "tables"]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and not ast.get_docstring(node):
                missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not missing, "\n".join(missing)


SHOWN = ("app.records", "app.detect.models.welford", "app.detect.models.seasonal", "app.query.filter")


@pytest.mark.parametrize("module", [*SHOWN, "app.detect.models.log_seasonal", "app.detect.models.persistence",
                                    "app.detect.attention", "app.flows.clock", "app.flows.ranges", "app.api.ledger",
                                    "app.api.webhook", "app.query.top", "app.query.show", "app.runtime.status",
                                    "app.runtime.roundtrip"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0
    if module in SHOWN:
        assert result.attempted > 0, f"{module} should show its use in doctests"
