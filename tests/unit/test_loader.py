"""One task-module loader for ``yadtq`` and ``yadtq-worker`` (``yadtq.loader``)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from yadtq import default_registry
from yadtq.loader import TaskModuleNotFound, load_task_modules, module_names

BIN = Path(sys.executable).parent
UNREACHABLE = ["--redis-url", "redis://127.0.0.1:1/0", "--kafka-bootstrap", "127.0.0.1:1"]


def write_package(root: Path, package: str, task_name: str, extra: str = "") -> None:
    (root / package).mkdir()
    (root / package / "__init__.py").write_text("", encoding="utf-8")
    (root / package / "tasks.py").write_text(
        f"import sys\n{extra}from yadtq import task\n\n"
        f"@task({task_name!r})\ndef run(a: int) -> int:\n    return a\n\n"
        f"print('loaded {package}.tasks', file=sys.stderr)\n", encoding="utf-8")


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh package ``pkg_<hex>`` with a ``tasks`` module in the (temporary) current directory."""
    name = f"pkg_{uuid.uuid4().hex[:8]}"
    write_package(tmp_path, name, name.upper())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield name
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]


def test_module_names_split_commas_and_fall_back_to_the_variable() -> None:
    env = {"YADTQ_TASKS": "a.tasks, b ,,c"}
    assert module_names(["x,y", " z "], env) == ["x", "y", "z"]
    assert module_names([], env) == ["a.tasks", "b", "c"]
    assert module_names([""], env) == ["a.tasks", "b", "c"]
    assert module_names([], {}) == []


def test_loads_a_package_from_the_current_directory(package: str) -> None:
    assert load_task_modules([f"{package}.tasks"], environ={}) == [f"{package}.tasks"]
    assert package.upper() in default_registry.names()
    assert os.getcwd() in sys.path


def test_reads_yadtq_tasks_when_no_module_is_given(package: str) -> None:
    assert load_task_modules([], environ={"YADTQ_TASKS": f"{package}.tasks"}) == [f"{package}.tasks"]
    assert f"{package}.tasks" in sys.modules


def test_nothing_to_load_leaves_sys_path_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    before = list(sys.path)
    assert load_task_modules([], environ={}) == []
    assert sys.path == before


def test_a_missing_module_is_named(package: str) -> None:
    with pytest.raises(TaskModuleNotFound, match=r"task module 'nope_x\.tasks' not found") as exc:
        load_task_modules(["nope_x.tasks"], environ={})
    assert exc.value.name == "nope_x"
    with pytest.raises(TaskModuleNotFound, match=rf"task module '{package}\.nothing' not found"):
        load_task_modules([f"{package}.nothing"], environ={})


def test_a_missing_dependency_is_told_apart(tmp_path: Path, package: str) -> None:
    write_package(tmp_path, package + "_dep", "DEPTASK", extra="import not_installed_zz  # noqa\n")
    with pytest.raises(TaskModuleNotFound, match="imports 'not_installed_zz', which is not installed"):
        load_task_modules([f"{package}_dep.tasks"], environ={})
    sys.modules.pop(f"{package}_dep", None)


def test_other_import_errors_propagate(tmp_path: Path, package: str) -> None:
    (tmp_path / package / "broken.py").write_text("raise RuntimeError('boom')\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="boom"):
        load_task_modules([f"{package}.broken"], environ={})


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YADTQ_")}
    env.pop("PYTHONPATH", None)
    return env


def test_the_cli_loads_a_package_from_the_current_directory(tmp_path: Path) -> None:
    """``yadtq --tasks mypkg.tasks`` from the directory holding ``mypkg/``: the module is imported
    (its print reaches stderr), then the command fails only on the unreachable Redis (exit 1)."""
    write_package(tmp_path, "mypkg", "MYTASK")
    argv = [str(BIN / "yadtq"), "--tasks", "mypkg.tasks", *UNREACHABLE, "tasks"]
    proc = subprocess.run(argv, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60)
    assert "loaded mypkg.tasks" in proc.stderr and "Redis unreachable" in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    argv[2] = "absent_pkg.tasks"
    proc = subprocess.run(argv, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "task module 'absent_pkg.tasks' not found" in proc.stderr


def test_the_worker_loads_the_same_way(tmp_path: Path) -> None:
    write_package(tmp_path, "mypkg", "MYTASK")
    env = {**_env(), "YADTQ_TASKS": "absent_pkg.tasks"}
    proc = subprocess.run([str(BIN / "yadtq-worker"), *UNREACHABLE], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "task module 'absent_pkg.tasks' not found" in proc.stderr
    env["YADTQ_TASKS"] = "mypkg.tasks"
    worker = subprocess.Popen([str(BIN / "yadtq-worker"), *UNREACHABLE], cwd=tmp_path, env=env,
                              stderr=subprocess.PIPE, text=True)
    try:  # it imports the module, then keeps waiting for the unreachable Kafka
        assert worker.stderr is not None
        first = worker.stderr.readline()
        assert first.strip() == "loaded mypkg.tasks", first
    finally:
        worker.kill()
        worker.communicate(timeout=30)
