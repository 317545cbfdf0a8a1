"""Aloft's Python SDK: tasks and workflows as typed Python functions.

    from aloft import task, workflow, map_task, Blob

    @task(cache="1")
    def double(n: int) -> int:
        return n * 2

    @workflow
    def twice(x: int) -> int:
        return double(n=double(n=x))

``aloft register FILE.py`` and ``aloft run FILE.py:twice --input x=3`` compile such files into the same spec
documents YAML files give; calling ``twice(x=3)`` in plain Python runs it in-process.
"""

from aloft.definition import DefinitionError
from aloft.dynamic import Dynamic, dynamic
from aloft.nodes import branch, gate
from aloft.notify import on_email, on_slack, on_webhook
from aloft.remote import Execution, Remote, RemoteError
from aloft.resources import Resources, Secret
from aloft.task import RecoverableError, Task, map_task, task
from aloft.types import AloftTypeError, Blob, Columns
from aloft.workflow import LaunchPlan, Workflow, cron, workflow

__all__ = [
    "AloftTypeError",
    "Blob",
    "Columns",
    "DefinitionError",
    "Dynamic",
    "Execution",
    "LaunchPlan",
    "RecoverableError",
    "Remote",
    "RemoteError",
    "Resources",
    "Secret",
    "Task",
    "Workflow",
    "branch",
    "cron",
    "dynamic",
    "gate",
    "map_task",
    "on_email",
    "on_slack",
    "on_webhook",
    "task",
    "workflow",
]
