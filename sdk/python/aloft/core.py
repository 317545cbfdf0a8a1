"""Authoring: ``@task``, ``@workflow``, ``map_task`` and ``LaunchPlan``, compiled to the spec documents that
YAML files produce (admin's compiler stays the single judge of a workflow).

A workflow function is traced, not run: its inputs are promises, calling a task inside it adds a node and
returns promises of the node's outputs. Outside a workflow being traced, a task or workflow is a plain
function: ``train(rows=10)`` runs in-process with the same type conversions (local execution, for tests).
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import inspect
import json
import os
import sys
import typing
from collections.abc import Callable
from typing import Any, NamedTuple

from aloft.types import AloftTypeError, from_json, literal_type, to_json


class DefinitionError(Exception):
    """A task or workflow that cannot be compiled; the message names the file and line."""


def _where(function: Callable[..., Any]) -> str:
    code = getattr(function, "__code__", None)
    if code is None:
        return getattr(function, "__qualname__", repr(function))
    return f"{code.co_filename}:{code.co_firstlineno}"


def _caller_location() -> str:
    """The file and line of the user's code that called into the SDK."""
    frame = inspect.currentframe()
    here = os.path.dirname(os.path.abspath(__file__))
    while frame is not None:
        filename = frame.f_code.co_filename
        if not os.path.abspath(filename).startswith(here):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


@dataclasses.dataclass(frozen=True)
class Resources:
    """What an attempt asks for: ``Resources(cpu="2", memory="4Gi", gpu=1)`` (Kubernetes quantities)."""

    cpu: str | None = None
    memory: str | None = None
    gpu: int | None = None
    accelerator: str | None = None
    ephemeral_storage: str | None = None
    limits: dict[str, str] | None = None
    pools: dict[str, int] | None = None

    def spec(self) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}


@dataclasses.dataclass(frozen=True)
class Secret:
    """A secret the task gets at attempt start: as ``env`` or as ``file`` in ``$ALOFT_SECRETS_DIR``."""

    name: str
    env: str | None = None
    file: str | None = None

    def spec(self) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}


class RecoverableError(Exception):
    """Raised by a task whose failure may pass on a retry (it counts against ``retries``)."""


class Promise:
    """A value a workflow will have when it runs: a workflow input or an upstream node's output."""

    def __init__(self, binding: str, hint: Any, node: str | None = None) -> None:
        self.binding = binding
        self.hint = hint
        self.node = node

    def __rshift__(self, other: Promise | NodeOutputs) -> Promise | NodeOutputs:
        _order(self.node, other)
        return other

    def __bool__(self) -> bool:
        raise DefinitionError(
            f"{_caller_location()}: a workflow value is not known while the workflow is defined; "
            "use it as a task input, or in aloft.branch(...), instead of in an if or while"
        )

    # Comparisons build branch conditions (`prep > 10`), compiled to the engine's condition syntax.
    def _compare(self, op: str, other: Any) -> Condition:
        return Condition(f"{self.binding} {op} {_operand(other)}")

    def __gt__(self, other: Any) -> Condition:
        return self._compare(">", other)

    def __ge__(self, other: Any) -> Condition:
        return self._compare(">=", other)

    def __lt__(self, other: Any) -> Condition:
        return self._compare("<", other)

    def __le__(self, other: Any) -> Condition:
        return self._compare("<=", other)

    def __eq__(self, other: Any) -> Condition:  # type: ignore[override]
        return self._compare("==", other)

    def __ne__(self, other: Any) -> Condition:  # type: ignore[override]
        return self._compare("!=", other)

    def __hash__(self) -> int:
        return hash(self.binding)

    def with_overrides(self, **overrides: Any) -> Promise:
        """Overrides the node's ``retries``, ``timeout``, ``interruptible`` or ``resources``."""
        _override(self.node, overrides)
        return self

    def __repr__(self) -> str:
        return f"Promise({self.binding}: {literal_type(self.hint)})"


class NodeOutputs(tuple):  # type: ignore[type-arg]
    """The outputs of a node with several: unpack them, or order the node with ``>>``."""

    node: str

    def __rshift__(self, other: Promise | NodeOutputs) -> Promise | NodeOutputs:
        _order(self.node, other)
        return other

    def with_overrides(self, **overrides: Any) -> NodeOutputs:
        """Overrides the node's ``retries``, ``timeout``, ``interruptible`` or ``resources``."""
        _override(self.node, overrides)
        return self


class Condition:
    """A branch condition built from promises: ``(a > 1) & (b == "x")``, ``(a > 1) | (b < 0)``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __and__(self, other: Condition) -> Condition:
        return Condition(f"({self.text}) and ({other.text})")

    def __or__(self, other: Condition) -> Condition:
        return Condition(f"({self.text}) or ({other.text})")

    def __bool__(self) -> bool:
        raise DefinitionError(
            f"{_caller_location()}: a condition on workflow values is decided when the workflow runs; "
            "pass it to aloft.branch(...) instead of using it in an if, and combine with & and |"
        )

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"


def _operand(value: Any) -> str:
    if isinstance(value, Promise):
        return value.binding
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise DefinitionError(f"{_caller_location()}: {value!r} cannot appear in a branch condition")


def _override(node: str | None, overrides: dict[str, Any]) -> None:
    builder = _TRACING.get()
    if builder is None or node is None:
        raise DefinitionError(
            f"{_caller_location()}: with_overrides applies to a node of a workflow being defined"
        )
    target = builder.node(node)
    for key, value in overrides.items():
        if key == "retries":
            target["retries"] = {"user": int(value)}
        elif key == "timeout":
            target["timeout"] = str(value)
        elif key == "interruptible":
            target["interruptible"] = bool(value)
        elif key == "resources":
            if not isinstance(value, Resources):
                raise DefinitionError(f"{_caller_location()}: resources= takes aloft.Resources(...)")
            target["resources"] = value.spec()
        else:
            raise DefinitionError(
                f"{_caller_location()}: unknown override {key!r} (retries, timeout, interruptible, resources)"
            )


def _order(before: str | None, after: Promise | NodeOutputs) -> None:
    builder = _TRACING.get()
    target = after.node
    if builder is None or before is None or target is None:
        raise DefinitionError(f"{_caller_location()}: >> orders two nodes of a workflow being defined")
    builder.node(target).setdefault("after", []).append(before)


def current_builder() -> _Builder | None:
    """The workflow being traced, if any (for the node kinds in ``aloft.nodes``)."""
    return _TRACING.get()


def _output_hints(function: Callable[..., Any], returns: Any) -> dict[str, Any]:
    """Named outputs of a function from its return annotation: a NamedTuple's fields, a tuple's ``o0``,
    ``o1``, ..., one value as ``o0``, nothing for ``None``."""
    if returns is None or returns is type(None) or returns is inspect.Signature.empty:
        return {}
    if isinstance(returns, type) and issubclass(returns, tuple) and hasattr(returns, "_fields"):
        return dict(typing.get_type_hints(returns))
    if typing.get_origin(returns) is tuple:
        return {f"o{index}": hint for index, hint in enumerate(typing.get_args(returns))}
    return {"o0": returns}


def _signature(function: Callable[..., Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Input hints, input defaults and output hints of ``function``; every parameter must be annotated."""
    try:
        hints = typing.get_type_hints(function)
    except NameError as error:
        raise DefinitionError(f"{_where(function)}: {error}") from error
    inputs: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise DefinitionError(
                f"{_where(function)}: {function.__name__} takes *args or **kwargs; name every input"
            )
        if name not in hints:
            raise DefinitionError(
                f"{_where(function)}: input {name!r} of {function.__name__} has no type hint"
            )
        inputs[name] = hints[name]
        if parameter.default is not parameter.empty:
            defaults[name] = parameter.default
    outputs = _output_hints(function, hints.get("return", inspect.Signature.empty))
    for name, hint in {**inputs, **outputs}.items():
        try:
            literal_type(hint)
        except AloftTypeError as error:
            raise DefinitionError(f"{_where(function)}: {function.__name__}.{name}: {error}") from error
    return inputs, defaults, outputs


def _interface(inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "inputs": {name: literal_type(hint) for name, hint in inputs.items()},
        "outputs": {name: literal_type(hint) for name, hint in outputs.items()},
    }


class Task:
    """A Python function registered as an Aloft task (see :func:`task`)."""

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        name: str | None,
        cache: str | None,
        retries: int,
        timeout: str | None,
        resources: Resources | None,
        secrets: list[Secret],
        image: str | None,
    ) -> None:
        self.function = function
        self.name = name or function.__name__
        self.inputs, self.defaults, self.outputs = _signature(function)
        self.cache = cache
        self.retries = retries
        self.timeout = timeout
        self.resources = resources
        self.secrets = secrets
        self.image = image
        self.__doc__ = function.__doc__

    def _command(self) -> list[str]:
        module = sys.modules.get(self.function.__module__)
        module_file = getattr(module, "__file__", None)
        if self.image is not None or module_file is None:
            return [
                "python",
                "-m",
                "aloft.execute",
                "--module",
                self.function.__module__,
                "--task",
                self.name,
            ]
        # On the propeller's machine (`aloft dev`, a process task): this interpreter, this file.
        return [
            sys.executable,
            "-m",
            "aloft.execute",
            "--file",
            os.path.abspath(module_file),
            "--task",
            self.name,
        ]

    def spec(self) -> dict[str, Any]:
        """The task's spec document, as a YAML file would give it."""
        source = inspect.getsource(self.function).encode()
        # The code is part of the spec: changed code is a new content-hashed version.
        env = {"ALOFT_PYTHON_SOURCE_SHA256": hashlib.sha256(source).hexdigest()}
        command = self._command()
        if self.image is not None:
            run: dict[str, Any] = {"container": {"image": self.image, "command": command, "env": env}}
        else:
            run = {"process": {"command": command, "env": env}}
        spec: dict[str, Any] = {
            "kind": "task",
            "name": self.name,
            "interface": _interface(self.inputs, self.outputs),
            "run": run,
        }
        if self.retries:
            spec["retries"] = {"user": self.retries}
        if self.timeout:
            spec["timeout"] = self.timeout
        if self.cache:
            spec["cache"] = {"version": self.cache}
        if self.resources:
            spec["resources"] = self.resources.spec()
        if self.secrets:
            spec["secrets"] = [secret.spec() for secret in self.secrets]
        return spec

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = _TRACING.get()
        if builder is None:
            return self.run_locally(*args, **kwargs)
        if args:
            raise DefinitionError(
                f"{_caller_location()}: call task {self.name} with named inputs (name=value)"
            )
        return builder.add_task_node(self, kwargs)

    def run_locally(self, *args: Any, **kwargs: Any) -> Any:
        """Calls the function as an attempt would: inputs through their declared types, and a one-output
        result as that value (a workflow sees a one-output task as its value, not a one-field tuple)."""
        bound = inspect.signature(self.function).bind(*args, **kwargs)
        bound.apply_defaults()
        converted = {
            name: from_json(to_json(value, self.inputs[name]), self.inputs[name])
            for name, value in bound.arguments.items()
        }
        return single_output(self.outputs, self.function(**converted))


def single_output(outputs: dict[str, Any], returned: Any) -> Any:
    """``returned`` as a workflow sees it: a one-field named tuple as its one value."""
    if len(outputs) == 1 and isinstance(returned, tuple) and hasattr(returned, "_fields"):
        return returned[0]
    return returned


def task(
    function: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    cache: str | None = None,
    retries: int = 0,
    timeout: str | None = None,
    resources: Resources | None = None,
    secrets: list[Secret] | None = None,
    image: str | None = None,
) -> Any:
    """Makes a typed Python function an Aloft task.

    ``cache``: memoize results under this cache version. ``retries``: retries after a user error (an
    exception). ``image``: run in this container image (which must have the SDK and the module installed)
    instead of as a process of the propeller's machine.
    """

    def wrap(inner: Callable[..., Any]) -> Task:
        return Task(
            inner,
            name=name,
            cache=cache,
            retries=retries,
            timeout=timeout,
            resources=resources,
            secrets=list(secrets or []),
            image=image,
        )

    return wrap(function) if function is not None else wrap


class MapTask:
    """``map_task(t)(over=list_promise, other=...)``: one node running ``t`` once per item of a list input."""

    def __init__(self, inner: Task, concurrency: int | None, min_success_ratio: float | None) -> None:
        self.task = inner
        self.concurrency = concurrency
        self.min_success_ratio = min_success_ratio

    def __call__(self, **kwargs: Any) -> Any:
        builder = _TRACING.get()
        if builder is None:
            return self._run_locally(kwargs)
        return builder.add_map_node(self, kwargs)

    def over(self, kwargs: dict[str, Any], where: str) -> str:
        """The input mapped over: the one given a list where the task takes one item."""
        candidates = []
        for name, value in kwargs.items():
            hint = self.task.inputs.get(name)
            given = value.hint if isinstance(value, Promise) else None
            if hint is not None and given is not None and typing.get_origin(given) is list:
                (item,) = typing.get_args(given)
                if literal_type(item) == literal_type(hint):
                    candidates.append(name)
            elif hint is not None and isinstance(value, list) and typing.get_origin(hint) is not list:
                candidates.append(name)
        if len(candidates) != 1:
            raise DefinitionError(
                f"{where}: map_task({self.task.name}) needs exactly one input given a list of the task's "
                f"input type (found {candidates or 'none'})"
            )
        return candidates[0]

    def _run_locally(self, kwargs: dict[str, Any]) -> Any:
        over = self.over(kwargs, _caller_location())
        results = [self.task.run_locally(**{**kwargs, over: item}) for item in kwargs[over]]
        names = list(self.task.outputs)
        if len(names) <= 1:
            return results
        return tuple([result[index] for result in results] for index in range(len(names)))


def map_task(inner: Task, concurrency: int | None = None, min_success_ratio: float | None = None) -> MapTask:
    """A map node over ``inner``: call it with one input given a list; each output becomes a list."""
    if not isinstance(inner, Task):
        raise DefinitionError(f"{_caller_location()}: map_task takes a @task, got {inner!r}")
    return MapTask(inner, concurrency, min_success_ratio)


class _Builder:
    """The nodes of a workflow being traced."""

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self.nodes: list[dict[str, Any]] = []
        self.tasks: dict[str, Task] = {}
        self.workflows: dict[str, Workflow] = {}

    def node(self, node_id: str) -> dict[str, Any]:
        return next(node for node in self.nodes if node["id"] == node_id)

    def _node_id(self, base: str) -> str:
        taken = {node["id"] for node in self.nodes}
        if base not in taken:
            return base
        index = 2
        while f"{base}-{index}" in taken:
            index += 1
        return f"{base}-{index}"

    def capture(self, make: Callable[[], Any], where: str) -> tuple[dict[str, Any], Any]:
        """The one node ``make()`` adds (a branch case), taken out of the workflow's node list, and what
        ``make`` returned."""
        before = len(self.nodes)
        returned = make()
        added = self.nodes[before:]
        if len(added) != 1:
            raise DefinitionError(
                f"{where}: a branch case must call exactly one task or workflow ({len(added)} called)"
            )
        del self.nodes[before:]
        return added[0], returned

    def add_workflow_node(self, callee: Workflow, kwargs: dict[str, Any]) -> Any:
        where = _caller_location()
        node_id = self._node_id(callee.name)
        self.workflows[callee.name] = callee
        self.nodes.append(
            {"id": node_id, "workflow": callee.name, "inputs": self._bindings(callee, kwargs, where)}
        )
        if not callee.outputs:
            nothing = _NoOutputs()
            nothing.node = node_id
            return nothing
        return self._outputs(node_id, callee.outputs)

    def _bindings(
        self, callee: Task | Workflow, kwargs: dict[str, Any], where: str, mapped: str | None = None
    ) -> dict[str, Any]:
        missing = [name for name in callee.inputs if name not in kwargs and name not in callee.defaults]
        extra = [name for name in kwargs if name not in callee.inputs]
        if missing or extra:
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"unknown {', '.join(extra)}"] if extra else []
            )
            raise DefinitionError(f"{where}: {callee.name}: {'; '.join(parts)}")
        bindings: dict[str, Any] = {}
        for name, hint in callee.inputs.items():
            if name not in kwargs:
                bindings[name] = {"value": to_json(callee.defaults[name], hint)}
                continue
            value = kwargs[name]
            expected = list[hint] if name == mapped else hint  # type: ignore[valid-type]
            if isinstance(value, Promise):
                given, wanted = literal_type(value.hint), literal_type(expected)
                if not _assignable(given, wanted):
                    raise DefinitionError(f"{where}: {callee.name}.{name} takes {wanted}, given {given}")
                bindings[name] = value.binding
            elif isinstance(value, NodeOutputs):
                raise DefinitionError(
                    f"{where}: {callee.name}.{name}: a node with several outputs; unpack them"
                )
            else:
                try:
                    bindings[name] = {"value": to_json(value, expected)}
                except AloftTypeError as error:
                    raise DefinitionError(f"{where}: {callee.name}.{name}: {error}") from error
        return bindings

    def _outputs(self, node_id: str, hints: dict[str, Any]) -> Any:
        promises = [Promise(f"{node_id}.{name}", hint, node_id) for name, hint in hints.items()]
        if len(promises) == 1:
            return promises[0]
        outputs = NodeOutputs(promises)
        outputs.node = node_id
        return outputs

    def add_task_node(self, callee: Task, kwargs: dict[str, Any]) -> Any:
        where = _caller_location()
        node_id = self._node_id(callee.name)
        self.tasks[callee.name] = callee
        self.nodes.append(
            {"id": node_id, "task": callee.name, "inputs": self._bindings(callee, kwargs, where)}
        )
        if not callee.outputs:
            nothing = _NoOutputs()
            nothing.node = node_id
            return nothing
        return self._outputs(node_id, callee.outputs)

    def add_map_node(self, mapped: MapTask, kwargs: dict[str, Any]) -> Any:
        where = _caller_location()
        over = mapped.over(kwargs, where)
        node_id = self._node_id(f"{mapped.task.name}-map")
        self.tasks[mapped.task.name] = mapped.task
        spec: dict[str, Any] = {"task": mapped.task.name, "over": over}
        if mapped.concurrency is not None:
            spec["concurrency"] = mapped.concurrency
        if mapped.min_success_ratio is not None:
            spec["min_success_ratio"] = mapped.min_success_ratio
        self.nodes.append(
            {"id": node_id, "map": spec, "inputs": self._bindings(mapped.task, kwargs, where, over)}
        )
        hints = {name: list[hint] for name, hint in mapped.task.outputs.items()}  # type: ignore[valid-type]
        return self._outputs(node_id, hints)


class _NoOutputs(NodeOutputs):
    pass


def _assignable(given: str, wanted: str) -> bool:
    if given == wanted or wanted == f"optional<{given}>":
        return True
    if given.startswith("blob") and wanted.startswith("blob"):
        return given == "blob" or wanted == "blob" or given == wanted
    return False


_TRACING: contextvars.ContextVar[_Builder | None] = contextvars.ContextVar("aloft_tracing", default=None)


class Workflow:
    """A Python function whose body wires tasks together (see :func:`workflow`)."""

    def __init__(self, function: Callable[..., Any], name: str | None) -> None:
        self.function = function
        self.name = name or function.__name__
        self.inputs, self.defaults, self.outputs = _signature(function)
        self.__doc__ = function.__doc__
        self._compiled: tuple[dict[str, Any], dict[str, Task]] | None = None
        self._subworkflows: dict[str, Workflow] = {}

    def _trace(self) -> tuple[dict[str, Any], dict[str, Task]]:
        if self._compiled is not None:
            return self._compiled
        builder = _Builder(self)
        promises = {name: Promise(f"inputs.{name}", hint) for name, hint in self.inputs.items()}
        token = _TRACING.set(builder)
        try:
            returned = self.function(**promises)
        finally:
            _TRACING.reset(token)
        where = _where(self.function)
        if isinstance(returned, _NoOutputs) or returned is None:
            values: list[Any] = []
        elif isinstance(returned, (tuple, list)) and not isinstance(returned, Promise):
            values = list(returned)
        else:
            values = [returned]
        if len(values) != len(self.outputs):
            raise DefinitionError(
                f"{where}: {self.name} declares {len(self.outputs)} output(s) and returns {len(values)}"
            )
        outputs: dict[str, Any] = {}
        for (name, hint), value in zip(self.outputs.items(), values, strict=True):
            if not isinstance(value, Promise):
                raise DefinitionError(
                    f"{where}: output {name} of {self.name} must be a task's output or a workflow input, "
                    f"not {value!r}"
                )
            if not _assignable(literal_type(value.hint), literal_type(hint)):
                raise DefinitionError(
                    f"{where}: output {name} of {self.name} is {literal_type(hint)}, "
                    f"given {literal_type(value.hint)}"
                )
            outputs[name] = value.binding
        spec = {
            "kind": "workflow",
            "name": self.name,
            "interface": _interface(self.inputs, self.outputs),
            "nodes": builder.nodes,
            "outputs": outputs,
        }
        self._compiled = (spec, builder.tasks)
        self._subworkflows = builder.workflows
        return self._compiled

    def spec(self) -> dict[str, Any]:
        """The workflow's spec document, as a YAML file would give it."""
        return self._trace()[0]

    def documents(self) -> list[dict[str, Any]]:
        """Every document needed to register this workflow: its tasks, itself, and a launch plan of the same
        name carrying its default inputs when it has any."""
        spec, tasks = self._trace()
        documents: list[dict[str, Any]] = []
        for sub in self._subworkflows.values():
            documents.extend(document for document in sub.documents() if document["kind"] != "launch_plan")
        documents += [called.spec() for called in tasks.values()] + [spec]
        if self.defaults:
            documents.append(LaunchPlan(self, name=self.name, default_inputs=dict(self.defaults)).spec())
        return documents

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = _TRACING.get()
        if builder is not None:
            if args:
                raise DefinitionError(f"{_caller_location()}: call workflow {self.name} with named inputs")
            return builder.add_workflow_node(self, kwargs)
        # Local execution: the body runs with real values through the same conversions a task sees.
        bound = inspect.signature(self.function).bind(*args, **kwargs)
        bound.apply_defaults()
        converted = {
            name: from_json(to_json(value, self.inputs[name]), self.inputs[name])
            for name, value in bound.arguments.items()
        }
        return single_output(self.outputs, self.function(**converted))


def workflow(function: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Makes a typed Python function an Aloft workflow: its body calls tasks with named inputs."""

    def wrap(inner: Callable[..., Any]) -> Workflow:
        return Workflow(inner, name)

    return wrap(function) if function is not None else wrap


class Schedule(NamedTuple):
    spec: dict[str, Any]


def cron(expression: str, tz: str | None = None) -> Schedule:
    """A schedule on a cron expression (``0 2 * * *``), in time zone ``tz`` (UTC when left out)."""
    spec: dict[str, Any] = {"cron": expression}
    if tz:
        spec["timezone"] = tz
    return Schedule(spec)


class LaunchPlan:
    """A workflow with default and fixed inputs and, optionally, a schedule."""

    def __init__(
        self,
        target: Workflow,
        *,
        name: str,
        default_inputs: dict[str, Any] | None = None,
        fixed_inputs: dict[str, Any] | None = None,
        schedule: Schedule | None = None,
    ) -> None:
        self.workflow = target
        self.name = name
        self.default_inputs = default_inputs or {}
        self.fixed_inputs = fixed_inputs or {}
        self.schedule = schedule
        for given in (self.default_inputs, self.fixed_inputs):
            for key in given:
                if key not in target.inputs:
                    raise DefinitionError(f"{_caller_location()}: {target.name} has no input {key!r}")

    def spec(self) -> dict[str, Any]:
        def values(given: dict[str, Any]) -> dict[str, Any]:
            return {key: to_json(value, self.workflow.inputs[key]) for key, value in given.items()}

        spec: dict[str, Any] = {
            "kind": "launch_plan",
            "name": self.name,
            "workflow": self.workflow.name,
            "default_inputs": values(self.default_inputs),
            "fixed_inputs": values(self.fixed_inputs),
        }
        if self.schedule is not None:
            spec["schedule"] = self.schedule.spec
        return spec
