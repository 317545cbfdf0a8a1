"""A client of a running Aloft deployment, for scripts and notebooks: register what a Python file defines, run
it with Python values, wait, read typed outputs (and each node's) back, read the history, terminate, relaunch
and recover. It speaks admin's REST API (``/api/v1``) with the standard library only::

    remote = Remote("http://127.0.0.1:8089")            # or $ALOFT_ADMIN; token from $ALOFT_TOKEN
    run = remote.run(train, rows=500, lrs=[0.01, 0.1])   # registers train and what it calls, then launches
    print(run.wait().outputs)                            # {'o0': [0.91, 0.93]}
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from aloft.dynamic import Dynamic
from aloft.notify import TERMINAL_PHASES
from aloft.task import Task
from aloft.types import format_duration, from_json, to_text
from aloft.workflow import LaunchPlan, Workflow

_ENTITY_KINDS = {"task": "TASK", "workflow": "WORKFLOW", "launch_plan": "LAUNCH_PLAN"}


class RemoteError(Exception):
    """An answer of the deployment that is not a success: its HTTP status and admin's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def literal_json(literal: dict[str, Any], fetch: Callable[[], str] | None = None) -> Any:
    """The plain JSON value (as tasks read it) of a literal as the REST API writes it. An offloaded value
    (one too large to travel inline) is read with ``fetch``, which returns its stored text."""
    if len(literal) != 1:
        raise ValueError(f"not a literal: {literal!r}")
    ((kind, value),) = literal.items()
    if kind == "integer":
        return int(value)
    if kind == "float":
        return float(value)
    if kind in ("string", "boolean", "datetime"):
        return value
    if kind == "duration_millis":
        return format_duration(dt.timedelta(milliseconds=int(value)))
    if kind == "blob":
        return value.get("uri", "")
    if kind in ("list", "map") and fetch is not None and _holds_offloaded(literal):
        # Gathered from items some of which were offloaded: the download gives it whole, as JSON.
        return json.loads(fetch())
    if kind == "list":
        return [literal_json(item) for item in value.get("values", [])]
    if kind == "map":
        return {key: literal_json(item) for key, item in value.get("values", {}).items()}
    if kind == "struct_json":
        return json.loads(value)
    if kind == "none":
        return None
    if kind == "offloaded":
        if fetch is None:
            uri = value.get("uri")
            raise ValueError(f"the value at {uri} was offloaded to the blob store; read it by name")
        text = fetch()
        # Scalars are stored bare, collections as JSON (as a task reads its input file).
        value_type = value.get("type", {})
        while "optional" in value_type:
            value_type = value_type["optional"]
        if value_type.get("simple") in ("STRING", "DATETIME", "DURATION"):
            return text
        return json.loads(text)
    raise ValueError(f"unknown literal kind {kind!r}")


def _holds_offloaded(literal: dict[str, Any]) -> bool:
    ((kind, value),) = literal.items()
    if kind == "offloaded":
        return True
    if kind == "list":
        return any(_holds_offloaded(item) for item in value.get("values", []))
    if kind == "map":
        return any(_holds_offloaded(item) for item in value.get("values", {}).values())
    return False


class Execution:
    """An execution on the deployment; ``refresh`` or ``wait`` read its state again."""

    def __init__(
        self,
        remote: Remote,
        name: str,
        outputs: dict[str, Any] | None,
        inputs: dict[str, Any] | None = None,
    ) -> None:
        self.remote = remote
        self.name = name
        self._output_hints = outputs
        self._input_hints = inputs
        self.state: dict[str, Any] = {}

    @property
    def phase(self) -> str:
        return str(self.state.get("phase", "UNKNOWN"))

    @property
    def error(self) -> str:
        return str(self.state.get("error", ""))

    def _path(self, tail: str = "") -> str:
        return f"executions/{urllib.parse.quote(self.name)}{tail}"

    def refresh(self) -> Execution:
        """Reads the execution's phase, outputs and error again."""
        self.state = self.remote._call("GET", self._path("?without_nodes=true"))
        return self

    def node_inputs(self, node: str) -> dict[str, Any]:
        """What node ``node`` (its id in the workflow) was given, as plain values: its bindings resolved
        from the workflow's inputs, constants and upstream outputs. Raises ``LookupError`` while a node it
        reads has not produced its value yet."""
        query = urllib.parse.urlencode({"node_id": node})
        data = self.remote._call("GET", self._path(f"/node_data?{query}"))
        if "inputs" not in data:
            raise LookupError(f"node {node!r} of execution {self.name} has no inputs yet")
        return {
            name: literal_json(literal, functools.partial(self._download, name, node=node, inputs=True))
            for name, literal in data["inputs"].get("values", {}).items()
        }

    def node_outputs(self, node: str) -> dict[str, Any]:
        """The outputs of node ``node`` (its id in the workflow) as plain values, once it succeeded."""
        data = self.remote._call("GET", self._path("/data"))
        by_node = data.get("node_outputs", {})
        if node not in by_node:
            known = ", ".join(sorted(by_node)) or "none yet"
            raise KeyError(
                f"execution {self.name} has no outputs of node {node!r} (nodes with outputs: {known})"
            )
        return {
            name: literal_json(literal, functools.partial(self._download, name, node=node))
            for name, literal in by_node[node].get("values", {}).items()
        }

    def _download(self, name: str, node: str | None = None, inputs: bool = False) -> str:
        """The text of one input or output (of the execution, or of ``node``), as DownloadData streams it."""
        query: dict[str, str] = {"name": name}
        if node is not None:
            query["node_id"] = node
        if inputs:
            query["from_inputs"] = "true"
        return self.remote._get_bytes(self._path(f"/download?{urllib.parse.urlencode(query)}")).decode()

    def history(self) -> list[dict[str, Any]]:
        """Every event of the execution in log order, each with its ``index``, ``kind``, ``summary`` and
        ``occurred_at_millis``."""
        return list(self.remote._call("GET", self._path("/history")).get("events", []))

    def terminate(self, reason: str = "terminated through aloft.Remote") -> None:
        """Stops the execution; its running attempts are killed."""
        self.remote._call("POST", self._path("/terminate"), {"reason": reason})

    def relaunch(self, **inputs: Any) -> Execution:
        """A new execution of the same workflow version with the same inputs, ``inputs`` replacing some."""
        hints = self._input_hints or {}
        text = {
            key: to_text(value, hints[key]) if key in hints else str(value) for key, value in inputs.items()
        }
        created = self.remote._call("POST", self._path("/relaunch"), {"text_inputs": text})
        return Execution(self.remote, str(created["id"]["name"]), self._output_hints, self._input_hints)

    def recover(self) -> Execution:
        """A new execution that reuses the outputs of every node that succeeded here and runs the rest."""
        created = self.remote._call("POST", self._path("/recover"), {})
        return Execution(self.remote, str(created["id"]["name"]), self._output_hints, self._input_hints)

    def wait(self, timeout: float = 600.0, poll: float = 0.5) -> Execution:
        """Waits until the execution ends (any terminal phase); raises TimeoutError naming its phase."""
        deadline = time.monotonic() + timeout
        while self.refresh().phase not in TERMINAL_PHASES:
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {self.name} is still {self.phase} after {timeout} s")
            time.sleep(poll)
        return self

    @property
    def outputs(self) -> dict[str, Any]:
        """The outputs as Python values of their declared types (plain JSON values when run by name)."""
        values = self.state.get("outputs", {}).get("values", {})
        plain = {
            name: literal_json(literal, functools.partial(self._download, name))
            for name, literal in values.items()
        }
        if self._output_hints is None:
            return plain
        return {
            name: from_json(plain[name], hint) for name, hint in self._output_hints.items() if name in plain
        }


class Remote:
    """A deployment's admin, for one project and domain."""

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        project: str = "default",
        domain: str = "development",
        token: str | None = None,
    ) -> None:
        self.endpoint = (endpoint or os.environ.get("ALOFT_ADMIN") or "http://127.0.0.1:8089").rstrip("/")
        self.project = project
        self.domain = domain
        self.token = token if token is not None else os.environ.get("ALOFT_TOKEN")

    def _get_bytes(self, path: str) -> bytes:
        """The body of a GET that answers bytes (a download)."""
        import urllib.error
        import urllib.request

        url = f"{self.endpoint}/api/v1/projects/{self.project}/domains/{self.domain}/{path}"
        request = urllib.request.Request(url, method="GET")
        if self.token:
            request.add_header("authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as error:
            raise RemoteError(error.code, error.read().decode(errors="replace")) from None
        except urllib.error.URLError as error:
            raise RemoteError(0, f"cannot reach {self.endpoint}: {error.reason}") from None

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        # Imported here: `urllib.request` takes ~20 ms to import, and every task attempt imports `aloft`.
        import urllib.error
        import urllib.request

        url = f"{self.endpoint}/api/v1/projects/{self.project}/domains/{self.domain}/{path}"
        request = urllib.request.Request(url, method=method)
        request.add_header("accept", "application/json")
        if self.token:
            request.add_header("authorization", f"Bearer {self.token}")
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            request.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(request, data=data, timeout=60) as response:
                answer: dict[str, Any] = json.loads(response.read() or b"{}")
                return answer
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            try:
                message = str(json.loads(text).get("message", text))
            except ValueError:
                message = text
            raise RemoteError(error.code, message) from None
        except urllib.error.URLError as error:
            raise RemoteError(0, f"cannot reach {self.endpoint}: {error.reason}") from None

    def register(self, *definitions: Task | Workflow | LaunchPlan | Dynamic) -> dict[tuple[str, str], str]:
        """Registers each definition and everything it needs (tasks first, each once) in one batch: admin
        writes all of them or, when it refuses one, none. Returns the version of each document registered,
        by (kind, name)."""
        batch: dict[tuple[str, str], dict[str, Any]] = {}
        for definition in definitions:
            if isinstance(definition, Dynamic):
                documents = [definition.planner.spec()] + [used.spec() for used in definition.uses]
            elif isinstance(definition, Task):
                documents = [definition.spec()]
            else:
                documents = definition.documents()
            for document in documents:
                batch.setdefault((document["kind"], document["name"]), document)
        body = {
            "documents": [
                {
                    "kind": _ENTITY_KINDS[document["kind"]],
                    # The document's kind says what it is; the spec itself is the rest.
                    "spec_json": json.dumps(
                        {field: value for field, value in document.items() if field != "kind"}
                    ),
                }
                for document in batch.values()
            ]
        }
        results = self._call("POST", "registrations", body).get("results", [])
        return {
            key: str(answer.get("id", {}).get("version", ""))
            for key, answer in zip(batch, results, strict=True)
        }

    def run(
        self,
        target: Task | Workflow | LaunchPlan,
        *,
        name: str | None = None,
        **inputs: Any,
    ) -> Execution:
        """Registers ``target`` (and what it needs) and launches it with ``inputs`` (Python values of its
        declared input types); the registered version runs."""
        kind = (
            "launch_plan"
            if isinstance(target, LaunchPlan)
            else "task"
            if isinstance(target, Task)
            else "workflow"
        )
        versions = self.register(target)
        declared = (target.workflow if isinstance(target, LaunchPlan) else target).inputs
        unknown = [key for key in inputs if key not in declared]
        if unknown:
            raise TypeError(f"{target.name} has no input {', '.join(unknown)}")
        body: dict[str, Any] = {
            kind: {
                "project": self.project,
                "domain": self.domain,
                "name": target.name,
                "version": versions.get((kind, target.name), ""),
            },
            "text_inputs": {key: to_text(value, declared[key]) for key, value in inputs.items()},
        }
        if name:
            body["name"] = name
        created = self._call("POST", "executions", body)
        outputs = (target.workflow if isinstance(target, LaunchPlan) else target).outputs
        return Execution(self, str(created["id"]["name"]), dict(outputs), dict(declared))

    def execution(self, name: str) -> Execution:
        """An existing execution, by name (its outputs as plain JSON values)."""
        return Execution(self, name, None).refresh()
