"""Workflows: ``@workflow`` traces a typed function's body into nodes (tasks, maps, subworkflows, launch
plans; branches and gates come from ``aloft.nodes``) and emits its spec document with those of what it calls;
launch plans and schedules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from aloft.definition import DefinitionError, _caller_location, _where
from aloft.promises import _TRACING, NodeOutputs, Promise, _assignable, _NoOutputs
from aloft.task import MapTask, Task, _interface, _signature, call_locally
from aloft.types import AloftTypeError, literal_type, to_json

if TYPE_CHECKING:
    from aloft.dynamic import Dynamic


class _Builder:
    """The nodes of a workflow being traced."""

    def __init__(self, workflow: Workflow | None) -> None:
        """``workflow`` is None when a dynamic workflow's body is being planned."""
        self.workflow = workflow
        self.nodes: list[dict[str, Any]] = []
        self.tasks: dict[str, Task] = {}
        self.workflows: dict[str, Workflow] = {}
        self.launch_plans: dict[str, LaunchPlan] = {}

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
        self.workflows[callee.name] = callee
        return self._add_call_node("workflow", callee, kwargs)

    def add_dynamic_node(self, dynamic: Dynamic, kwargs: dict[str, Any]) -> Any:
        """A node that runs ``dynamic``'s planner, then the workflow it planned."""
        where = _caller_location()
        node_id = self._node_id(dynamic.name)
        self.tasks[dynamic.planner.name] = dynamic.planner
        for used in dynamic.uses:
            self.tasks[used.name] = used
        self.nodes.append(
            {
                "id": node_id,
                "dynamic": dynamic.node(),
                "inputs": self._bindings(dynamic.planner, kwargs, where),
            }
        )
        if not dynamic.outputs:
            nothing = _NoOutputs()
            nothing.node = node_id
            return nothing
        return self._outputs(node_id, dynamic.outputs)

    def add_launch_plan_node(self, plan: LaunchPlan, kwargs: dict[str, Any]) -> Any:
        """A node that launches ``plan`` as a child execution (linked to this one) and takes its outputs."""
        where = _caller_location()
        fixed = [name for name in kwargs if name in plan.fixed_inputs]
        if fixed:
            raise DefinitionError(
                f"{where}: {plan.name}: {', '.join(fixed)} fixed by the launch plan; a node cannot set it"
            )
        callee = plan.workflow
        defaulted = {**callee.defaults, **plan.default_inputs}
        missing = [
            name
            for name in callee.inputs
            if name not in kwargs and name not in defaulted and name not in plan.fixed_inputs
        ]
        extra = [name for name in kwargs if name not in callee.inputs]
        if missing or extra:
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"unknown {', '.join(extra)}"] if extra else []
            )
            raise DefinitionError(f"{where}: {plan.name}: {'; '.join(parts)}")
        node_id = self._node_id(plan.name)
        self.launch_plans[plan.name] = plan
        # Only what the node sets: the plan's defaults and fixed inputs are the plan's, applied at launch.
        given = {name: hint for name, hint in callee.inputs.items() if name in kwargs}
        bindings = self._bind_values(plan.name, given, kwargs, where)
        self.nodes.append({"id": node_id, "launch_plan": plan.name, "inputs": bindings})
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
        bindings = {
            name: {"value": to_json(callee.defaults[name], hint)}
            for name, hint in callee.inputs.items()
            if name not in kwargs
        }
        expected = {
            name: list[hint] if name == mapped else hint  # type: ignore[valid-type]
            for name, hint in callee.inputs.items()
            if name in kwargs
        }
        return {**bindings, **self._bind_values(callee.name, expected, kwargs, where)}

    def _bind_values(
        self, callee: str, expected: dict[str, Any], kwargs: dict[str, Any], where: str
    ) -> dict[str, Any]:
        """The bindings of the inputs in ``expected`` (name to hint) to the values or promises given."""
        bindings: dict[str, Any] = {}
        for name, hint in expected.items():
            value = kwargs[name]
            if isinstance(value, Promise):
                given, wanted = literal_type(value.hint), literal_type(hint)
                if not _assignable(given, wanted):
                    raise DefinitionError(f"{where}: {callee}.{name} takes {wanted}, given {given}")
                bindings[name] = value.binding
            elif isinstance(value, NodeOutputs):
                raise DefinitionError(f"{where}: {callee}.{name}: a node with several outputs; unpack them")
            else:
                try:
                    bindings[name] = {"value": to_json(value, hint)}
                except AloftTypeError as error:
                    raise DefinitionError(f"{where}: {callee}.{name}: {error}") from error
        return bindings

    def _outputs(self, node_id: str, hints: dict[str, Any]) -> Any:
        promises = [Promise(f"{node_id}.{name}", hint, node_id) for name, hint in hints.items()]
        if len(promises) == 1:
            return promises[0]
        outputs = NodeOutputs(promises)
        outputs.node = node_id
        return outputs

    def add_task_node(self, callee: Task, kwargs: dict[str, Any]) -> Any:
        self.tasks[callee.name] = callee
        return self._add_call_node("task", callee, kwargs)

    def _add_call_node(self, kind: str, callee: Task | Workflow, kwargs: dict[str, Any]) -> Any:
        """A node calling task or workflow ``callee`` (``kind``) with ``kwargs`` bound to its inputs; its
        outputs as promises."""
        where = _caller_location()
        node_id = self._node_id(callee.name)
        self.nodes.append({"id": node_id, kind: callee.name, "inputs": self._bindings(callee, kwargs, where)})
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
        if mapped.item_resources is not None:
            spec["item_resources"] = dict(mapped.item_resources)
        self.nodes.append(
            {"id": node_id, "map": spec, "inputs": self._bindings(mapped.task, kwargs, where, over)}
        )
        hints = {name: list[hint] for name, hint in mapped.task.outputs.items()}  # type: ignore[valid-type]
        return self._outputs(node_id, hints)


def _bind_outputs(
    name: str, declared: dict[str, Any], returned: Any, where: str, constants: bool = False
) -> dict[str, Any]:
    """The output bindings of a workflow body that returned ``returned`` for its ``declared`` outputs:
    promises (and, for a dynamic workflow's plan, plain values) of the declared types."""
    if isinstance(returned, _NoOutputs) or returned is None:
        values: list[Any] = []
    elif isinstance(returned, (tuple, list)) and not isinstance(returned, Promise):
        values = list(returned)
    else:
        values = [returned]
    if len(values) != len(declared):
        raise DefinitionError(f"{where}: {name} declares {len(declared)} output(s) and returns {len(values)}")
    outputs: dict[str, Any] = {}
    for (output, hint), value in zip(declared.items(), values, strict=True):
        if not isinstance(value, Promise):
            if constants:
                try:
                    outputs[output] = {"value": to_json(value, hint)}
                except AloftTypeError as error:
                    raise DefinitionError(f"{where}: output {output} of {name}: {error}") from error
                continue
            raise DefinitionError(
                f"{where}: output {output} of {name} must be a task's output or a workflow input, "
                f"not {value!r}"
            )
        if not _assignable(literal_type(value.hint), literal_type(hint)):
            given = literal_type(value.hint)
            raise DefinitionError(
                f"{where}: output {output} of {name} is {literal_type(hint)}, given {given}"
            )
        outputs[output] = value.binding
    return outputs


class Workflow:
    """A Python function whose body wires tasks together (see :func:`workflow`)."""

    def __init__(self, function: Callable[..., Any], name: str | None) -> None:
        self.function = function
        self.name = name or function.__name__
        self.inputs, self.defaults, self.outputs = _signature(function)
        self.__doc__ = function.__doc__
        self._compiled: tuple[dict[str, Any], dict[str, Task]] | None = None
        self._subworkflows: dict[str, Workflow] = {}
        self._launch_plans: dict[str, LaunchPlan] = {}

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
        outputs = _bind_outputs(self.name, self.outputs, returned, _where(self.function))
        spec = {
            "kind": "workflow",
            "name": self.name,
            "interface": _interface(self.inputs, self.outputs),
            "nodes": builder.nodes,
            "outputs": outputs,
        }
        self._compiled = (spec, builder.tasks)
        self._subworkflows = builder.workflows
        self._launch_plans = builder.launch_plans
        return self._compiled

    def spec(self) -> dict[str, Any]:
        """The workflow's spec document, as a YAML file would give it."""
        return self._trace()[0]

    def documents(self) -> list[dict[str, Any]]:
        """Every document needed to register this workflow: its tasks, the workflows and launch plans it
        calls, itself, and a launch plan of the same name carrying its default inputs when it has any."""
        spec, tasks = self._trace()
        documents: list[dict[str, Any]] = []
        for sub in self._subworkflows.values():
            documents.extend(document for document in sub.documents() if document["kind"] != "launch_plan")
        for plan in self._launch_plans.values():
            documents.extend(plan.documents())
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
        return call_locally(self.function, self.inputs, self.outputs, args, kwargs)


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
    """A workflow with default and fixed inputs and, optionally, a schedule and notification rules (see
    ``aloft.notify``)."""

    def __init__(
        self,
        target: Workflow,
        *,
        name: str,
        default_inputs: dict[str, Any] | None = None,
        fixed_inputs: dict[str, Any] | None = None,
        schedule: Schedule | None = None,
        notifications: list[dict[str, Any]] | None = None,
    ) -> None:
        self.workflow = target
        self.name = name
        self.notifications = list(notifications or [])
        self.default_inputs = default_inputs or {}
        self.fixed_inputs = fixed_inputs or {}
        self.schedule = schedule
        for given in (self.default_inputs, self.fixed_inputs):
            for key in given:
                if key not in target.inputs:
                    raise DefinitionError(f"{_caller_location()}: {target.name} has no input {key!r}")

    def documents(self) -> list[dict[str, Any]]:
        """Every document needed to register this launch plan: its workflow's (tasks, subworkflows, the
        workflow) and its own."""
        workflow_documents = [
            document for document in self.workflow.documents() if document["kind"] != "launch_plan"
        ]
        return [*workflow_documents, self.spec()]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """In a workflow: a node launching this plan as a linked child execution, its outputs as promises.
        Elsewhere: runs the workflow in-process with the plan's defaults and fixed inputs."""
        builder = _TRACING.get()
        if builder is not None:
            if args:
                raise DefinitionError(f"{_caller_location()}: call launch plan {self.name} with named inputs")
            return builder.add_launch_plan_node(self, kwargs)
        if args:
            raise TypeError(f"launch plan {self.name}: call with named inputs")
        fixed = [name for name in kwargs if name in self.fixed_inputs]
        if fixed:
            raise TypeError(f"launch plan {self.name}: {', '.join(fixed)} fixed by the plan")
        return self.workflow(**{**self.default_inputs, **kwargs, **self.fixed_inputs})

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
        if self.notifications:
            spec["notifications"] = self.notifications
        return spec
