"""The task entrypoint: inputs read by type, outputs written in the engine's text form, failures reported
as an error document the engine records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TASKS = """
from aloft import Blob, RecoverableError, dynamic, task

@task
def inc(n: int) -> int:
    return n + 1

@dynamic(uses=[inc])
def chain(length: int) -> int:
    value = 0
    for _ in range(length):
        value = inc(n=value)
    return value

@task
def stats(values: list[float], label: str, data: Blob["txt"]) -> tuple[float, str, Blob["txt"]]:
    out = "report.txt"
    with open(out, "w") as file:
        file.write(label + ":" + data.read_text().upper())
    return sum(values) / len(values), label.upper(), Blob["txt"](out)

@task
def flaky(n: int) -> int:
    raise RecoverableError("try again")

@task
def broken(n: int) -> int:
    return n // 0
"""


def run(
    tmp_path: Path, task: str, inputs: dict[str, str], blobs: dict[str, str] | None = None
) -> tuple[int, Path]:
    module = tmp_path / "tasks.py"
    module.write_text(TASKS)
    input_dir, output_dir = tmp_path / f"{task}-in", tmp_path / f"{task}-out"
    input_dir.mkdir()
    output_dir.mkdir()
    env = {**os.environ, "ALOFT_INPUT_DIR": str(input_dir), "ALOFT_OUTPUT_DIR": str(output_dir)}
    for name, text in inputs.items():
        (input_dir / name).write_text(text)
    for name, content in (blobs or {}).items():
        (input_dir / name).write_text(content)
        env[f"ALOFT_INPUT_{name.upper()}"] = str(input_dir / name)
    done = subprocess.run(
        [sys.executable, "-m", "aloft.execute", "--file", str(module), "--task", task],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    return done.returncode, output_dir


def test_a_task_reads_typed_inputs_and_writes_its_outputs(tmp_path: Path) -> None:
    code, outputs = run(tmp_path, "stats", {"values": "[1, 2, 4.5]", "label": "hi\n"}, {"data": "abc"})
    assert code == 0
    assert (outputs / "o0").read_text() == "2.5"
    assert (outputs / "o1").read_text() == "HI"
    assert (outputs / "o2").read_text() == "hi:ABC"


def test_exceptions_become_error_documents(tmp_path: Path) -> None:
    code, outputs = run(tmp_path, "flaky", {"n": "1"})
    assert code == 1
    error = json.loads((outputs / ".aloft-error.json").read_text())
    assert error["kind"] == "recoverable" and error["message"] == "RecoverableError: try again"
    code, outputs = run(tmp_path, "broken", {"n": "1"})
    error = json.loads((outputs / ".aloft-error.json").read_text())
    assert error["kind"] == "user" and "ZeroDivisionError" in error["message"]
    assert "n // 0" in error["traceback"]


def test_unreadable_inputs_and_unknown_tasks_are_system_errors(tmp_path: Path) -> None:
    code, outputs = run(tmp_path, "broken", {"n": "one"})
    error = json.loads((outputs / ".aloft-error.json").read_text())
    assert code == 1 and error["kind"] == "system" and "cannot read input 'n'" in error["message"]
    code, outputs = run(tmp_path, "nothing", {})
    error = json.loads((outputs / ".aloft-error.json").read_text())
    assert error["kind"] == "system" and "no task named 'nothing'" in error["message"]


def test_blobs_inside_a_list_output_are_staged_for_upload(tmp_path: Path) -> None:
    module = tmp_path / "chunker.py"
    module.write_text(
        "from aloft import Blob, task\n\n"
        "@task\n"
        "def chunk(n: int) -> list[Blob]:\n"
        "    paths = []\n"
        "    for i in range(n):\n"
        "        path = f'part-{i}'\n"
        "        open(path, 'w').write(str(i))\n"
        "        paths.append(Blob(path))\n"
        "    return paths\n"
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "in" / "n").write_text("2")
    env = {**os.environ, "ALOFT_INPUT_DIR": str(tmp_path / "in"), "ALOFT_OUTPUT_DIR": str(tmp_path / "out")}
    subprocess.run(
        [sys.executable, "-m", "aloft.execute", "--file", str(module), "--task", "chunk"],
        env=env,
        cwd=tmp_path,
        check=True,
    )
    assert json.loads((tmp_path / "out" / "o0").read_text()) == ["o0.items/0", "o0.items/1"]
    assert (tmp_path / "out" / "o0.items" / "1").read_text() == "1"


def test_a_dynamic_workflows_planner_returns_the_workflow_its_body_wired(tmp_path: Path) -> None:
    code, outputs = run(tmp_path, "chain", {"length": "3"})
    assert code == 0
    plan = json.loads((outputs / "workflow").read_text())
    assert [node["id"] for node in plan["nodes"]] == ["inc", "inc-2", "inc-3"]
    assert plan["nodes"][0]["inputs"] == {"n": {"value": 0}}
    assert plan["nodes"][1]["inputs"] == {"n": "inc.o0"}
    assert plan["outputs"] == {"o0": "inc-3.o0"}
    assert plan["interface"] == {"inputs": {"length": "integer"}, "outputs": {"o0": "integer"}}


FRAMES = """
import pandas
from aloft import task

@task
def top(counts: pandas.DataFrame, n: int) -> pandas.DataFrame:
    return counts.sort_values("count", ascending=False).head(n).reset_index(drop=True)
"""


def test_a_task_takes_and_returns_dataframes_as_parquet_blobs(tmp_path: Path) -> None:
    pandas = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    module = tmp_path / "frames.py"
    module.write_text(FRAMES)
    input_dir, output_dir = tmp_path / "in", tmp_path / "out"
    input_dir.mkdir()
    output_dir.mkdir()
    pandas.DataFrame({"gene": ["a", "b", "c"], "count": [1, 9, 5]}).to_parquet(input_dir / "counts")
    (input_dir / "n").write_text("2")
    env = {
        **os.environ,
        "ALOFT_INPUT_DIR": str(input_dir),
        "ALOFT_OUTPUT_DIR": str(output_dir),
        "ALOFT_INPUT_COUNTS": str(input_dir / "counts"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "aloft.execute", "--file", str(module), "--task", "top"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    # The output file is the parquet blob itself, as the engine uploads it.
    top = pandas.read_parquet(output_dir / "o0")
    assert top["gene"].tolist() == ["b", "c"]
