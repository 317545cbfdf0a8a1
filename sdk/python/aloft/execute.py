"""Runs one attempt of a Python task: ``python -m aloft.execute (--file PATH | --module NAME) --task NAME``.

Reads the attempt's inputs from ``$ALOFT_INPUT_DIR`` (a blob input from ``$ALOFT_INPUT_<NAME>``: its local
path or URI) and converts them by the declared types, calls the function, and writes each output to
``$ALOFT_OUTPUT_DIR`` (a blob output: the file it returned, copied in; blobs inside a list or map output:
copied to ``OUTPUT.items/N``, which the engine uploads too). On an exception it writes
``$ALOFT_OUTPUT_DIR/.aloft-error.json`` (kind, message, traceback), which the engine records as the
attempt's error: ``user`` for an exception in the task (``recoverable`` for ``aloft.RecoverableError``),
``system`` when the code cannot be imported or the inputs cannot be read.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import traceback
from typing import Any

from aloft.compile import load
from aloft.dynamic import Dynamic
from aloft.task import RecoverableError, Task, single_output
from aloft.types import Blob, frame_kind, from_text, literal_type, to_json, to_text, unannotated

ERROR_FILE = ".aloft-error.json"


class _Failure(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _load_task(file: str | None, module: str | None, name: str) -> Task:
    try:
        if file is not None:
            loaded = load(file)
        else:
            loaded = importlib.import_module(module or "")
    except Exception as error:  # the user's module failing to import is the platform's problem to report
        raise _Failure("system", f"cannot import {file or module}: {error!r}") from error
    for value in vars(loaded).values():
        if isinstance(value, Dynamic):
            value = value.planner
        if isinstance(value, Task) and value.name == name:
            return value
    raise _Failure("system", f"{file or module} defines no task named {name!r}")


def _read_inputs(task: Task) -> dict[str, Any]:
    input_dir = os.environ.get("ALOFT_INPUT_DIR", ".")
    inputs: dict[str, Any] = {}
    for name, hint in task.inputs.items():
        try:
            if literal_type(hint).startswith("blob"):
                text = os.environ.get(f"ALOFT_INPUT_{name.upper()}") or os.path.join(input_dir, name)
            else:
                with open(os.path.join(input_dir, name), encoding="utf-8") as file:
                    text = file.read()
            inputs[name] = from_text(text, hint)
        except FileNotFoundError:
            if name in task.defaults:
                inputs[name] = task.defaults[name]
                continue
            raise _Failure("system", f"input {name!r} was not staged in {input_dir}") from None
        except Exception as error:
            raise _Failure("system", f"cannot read input {name!r}: {error}") from error
    return inputs


def _write_outputs(task: Task, returned: Any) -> None:
    output_dir = os.environ.get("ALOFT_OUTPUT_DIR", ".")
    names = list(task.outputs)
    if not names:
        return
    returned = single_output(task.outputs, returned)
    values = [returned] if len(names) == 1 else list(returned)
    if len(values) != len(names):
        raise _Failure("user", f"{task.name} returned {len(values)} values for {len(names)} outputs")
    for name, value in zip(names, values, strict=True):
        hint = task.outputs[name]
        target = os.path.join(output_dir, name)
        if frame_kind(unannotated(hint)[0]) is not None and not isinstance(value, Blob):
            # A dataframe: its declared columns checked, written as parquet, then shipped like any blob.
            value = Blob(to_json(value, hint))
        if isinstance(value, Blob):
            if os.path.isdir(value.path):
                shutil.copytree(value.path, target)
            elif os.path.abspath(value.path) != os.path.abspath(target):
                shutil.copyfile(value.path, target)
            continue
        with open(target, "w", encoding="utf-8") as file:
            file.write(to_text(_stage_nested_blobs(value, name, output_dir, [0]), hint))


def _stage_nested_blobs(value: Any, output: str, output_dir: str, counter: list[int]) -> Any:
    """Copies each blob inside a list or map output into ``OUTPUT.items/N`` and names it by that relative
    path: the engine uploads such files to the blob store like a blob output."""
    if isinstance(value, Blob):
        relative = f"{output}.items/{counter[0]}"
        counter[0] += 1
        target = os.path.join(output_dir, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.isdir(value.path):
            shutil.copytree(value.path, target)
        else:
            shutil.copyfile(value.path, target)
        return type(value)(relative)
    if isinstance(value, list):
        return [_stage_nested_blobs(item, output, output_dir, counter) for item in value]
    if isinstance(value, dict):
        return {key: _stage_nested_blobs(item, output, output_dir, counter) for key, item in value.items()}
    return value


def _write_error(kind: str, message: str, trace: str) -> None:
    output_dir = os.environ.get("ALOFT_OUTPUT_DIR", ".")
    with open(os.path.join(output_dir, ERROR_FILE), "w", encoding="utf-8") as file:
        json.dump({"kind": kind, "message": message, "traceback": trace}, file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aloft.execute", description=__doc__)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--file", help="the Python file defining the task")
    where.add_argument("--module", help="the importable module defining the task")
    parser.add_argument("--task", required=True, help="the task's name")
    args = parser.parse_args(argv)
    try:
        task = _load_task(args.file, args.module, args.task)
        inputs = _read_inputs(task)
        try:
            returned = task.run_attempt(inputs)
        except RecoverableError as error:
            raise _Failure("recoverable", f"{type(error).__name__}: {error}") from error
        except Exception as error:
            raise _Failure("user", f"{type(error).__name__}: {error}") from error
        _write_outputs(task, returned)
    except _Failure as failure:
        trace = traceback.format_exc()
        print(trace, file=sys.stderr)
        _write_error(failure.kind, str(failure), trace)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
