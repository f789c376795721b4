"""Imports point one way (``yadtq_tui -> yadtq <- worker``); one module per service client;
no pickle, eval, exec, FLUSHALL or FLUSHDB anywhere in the source."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("yadtq", "worker", "yadtq_tui")
HEADLESS = ["yadtq", "yadtq.client", "yadtq.cli", "yadtq.store", "yadtq.wire", "yadtq.registry",
            "yadtq.settings", "yadtq.text", "yadtq.loader", "yadtq.testing", "worker.worker",
            "worker.main", "worker.execute"]


def sources(*packages: str) -> list[Path]:
    files = [p for pkg in packages for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert files, f"no sources under {packages}"
    return files


def imported(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (anywhere in the file)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute))
              and getattr(node.func, "id", getattr(node.func, "attr", "")) in
              ("import_module", "__import__")
              and node.args and isinstance(node.args[0], ast.Constant)):
            names.add(str(node.args[0].value))
    return names


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def importers(top: str) -> set[str]:
    return {rel(p) for p in sources(*PACKAGES)
            if any(n == top or n.startswith(top + ".") for n in imported(p))}


def test_headless_modules_do_not_load_textual_or_rich() -> None:
    code = (f"import importlib, json, sys\n"
            f"for m in {HEADLESS!r}: importlib.import_module(m)\n"
            f"print(json.dumps(sorted(m for m in sys.modules "
            f"if m.split('.')[0] in ('textual', 'rich', 'yadtq_tui', 'kafka'))))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    assert [m for m in loaded if not m.startswith("kafka")] == []


def test_the_kafka_client_is_imported_only_when_needed() -> None:
    code = ("import sys, yadtq.client, yadtq.cli, worker.worker; "
            "print('kafka' in sys.modules or 'confluent_kafka' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, "False"), proc.stderr


def test_only_the_kafka_adapters_import_kafka_clients() -> None:
    """kafka-python in ``yadtq.broker``, confluent-kafka in ``yadtq.broker_confluent``: nowhere else."""
    assert importers("kafka") == {"yadtq/broker.py"}
    assert importers("confluent_kafka") == {"yadtq/broker_confluent.py"}


def test_only_store_imports_redis() -> None:
    assert importers("redis") == {"yadtq/store.py"}


def test_core_and_worker_never_import_the_dashboard_or_textual() -> None:
    bad = {rel(p): sorted(n for n in imported(p)
                          if n.split(".")[0] in ("yadtq_tui", "textual", "rich"))
           for p in sources("yadtq", "worker")}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_core_never_imports_the_worker() -> None:
    users = {rel(p) for p in sources("yadtq") if any(n.split(".")[0] == "worker" for n in imported(p))}
    assert users == set()


FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "marshal", "shelve", "cloudpickle"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "execfile"}
FLUSH = re.compile(r"^\s*flush(all|db)\b", re.IGNORECASE)
LUA_FLUSH = re.compile(r"""call\(\s*['"]flush(all|db)['"]""", re.IGNORECASE)


def dangers(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    found = [f"imports {n}" for n in imported(path) if n.split(".")[0] in FORBIDDEN_MODULES]
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
            if isinstance(fn, ast.Name) and name in FORBIDDEN_CALLS:
                found.append(f"calls {name}() on line {node.lineno}")
            if name.lower() in ("flushall", "flushdb"):
                found.append(f"calls {name}() on line {node.lineno}")
            if name == "execute_command" and node.args and isinstance(node.args[0], ast.Constant) \
                    and FLUSH.match(str(node.args[0].value)):
                found.append(f"sends {node.args[0].value} on line {node.lineno}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if FLUSH.match(node.value) and len(node.value.split()) == 1:
                found.append(f"string {node.value!r} on line {node.lineno}")
            if LUA_FLUSH.search(node.value):
                found.append(f"Lua FLUSH on line {node.lineno}")
    return found


@pytest.mark.parametrize("path", sources(*PACKAGES), ids=rel)
def test_no_pickle_eval_exec_or_flush(path: Path) -> None:
    assert dangers(path) == []


def test_the_danger_scanner_finds_what_it_looks_for(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("import pickle\nfrom marshal import loads\nx = eval('1')\nexec('pass')\n"
                      "r.flushall()\nr.execute_command('FLUSHDB')\n"
                      "LUA = \"redis.call('FLUSHALL')\"\n'''never FLUSHALL here'''\n",
                      encoding="utf-8")
    found = dangers(sample)
    assert sorted(found) == sorted(["imports pickle", "imports marshal", "calls eval() on line 3",
                                    "calls exec() on line 4", "calls flushall() on line 5",
                                    "sends FLUSHDB on line 6", "string 'FLUSHDB' on line 6",
                                    "Lua FLUSH on line 7"])


def test_only_web_imports_textual_serve_and_aiohttp() -> None:
    assert importers("textual_serve") == {"yadtq_tui/web.py"}
    assert importers("aiohttp") == {"yadtq_tui/web.py"}


def test_the_terminal_dashboard_does_not_load_the_web_server() -> None:
    code = ("import sys, yadtq_tui.__main__, yadtq_tui.app; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'textual_serve')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, "[]"), proc.stderr
