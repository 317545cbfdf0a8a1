"""Compiles Python files of tasks and workflows into spec documents:
``python -m aloft.compile FILE [FILE...]`` prints them as one JSON array (what ``aloft register`` and
``aloft run`` read). Every workflow and launch plan defined at module level is compiled with the tasks it
calls; tasks defined but not called are included too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from typing import Any

from aloft.definition import DefinitionError
from aloft.task import Task
from aloft.workflow import LaunchPlan, Workflow


def load(path: str) -> Any:
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    module_name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise DefinitionError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def documents(path: str) -> list[dict[str, Any]]:
    """Every spec document the file at ``path`` defines, tasks first, each once."""
    module = load(path)
    found: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()

    def add(document: dict[str, Any]) -> None:
        key = (document["kind"], document["name"])
        if key not in seen:
            seen.add(key)
            found.append(document)

    values = list(vars(module).values())
    for value in values:
        if isinstance(value, Task):
            add(value.spec())
    for value in values:
        if isinstance(value, Workflow):
            for document in value.documents():
                add(document)
    for value in values:
        if isinstance(value, LaunchPlan):
            add(value.spec())
    if not found:
        raise DefinitionError(f"{path} defines no @task, @workflow or LaunchPlan")
    return found


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m aloft.compile FILE [FILE...]", file=sys.stderr)
        return 2
    try:
        compiled = [document for path in paths for document in documents(path)]
    except (DefinitionError, SyntaxError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    json.dump(compiled, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
