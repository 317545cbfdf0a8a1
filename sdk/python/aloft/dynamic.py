"""Dynamic workflows: ``@dynamic`` over a typed function whose body wires tasks with the *values* of its
inputs, so its shape can depend on them (a loop over ``range(n)``, a task per file of a list).

In a workflow, calling one adds a dynamic node. When the node runs, its planner task (the same function, run
by ``python -m aloft.execute``) calls the body with the real inputs, records the tasks it calls as a workflow
spec, and returns it as its ``workflow`` output; the engine compiles that plan (it may use only the tasks in
``uses``) and runs it under the node, whose outputs are the plan's. Outside a workflow, calling it runs the
body in-process with every task run locally.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aloft.definition import DefinitionError, _caller_location, _where
from aloft.promises import _TRACING
from aloft.resources import Resources, Secret
from aloft.task import MapTask, Task, _interface, _signature, call_locally, decorate
from aloft.types import literal_type
from aloft.workflow import _bind_outputs, _Builder


class _Planner(Task):
    """The task that runs a dynamic node's body and returns the workflow it wired (output ``workflow``)."""

    def __init__(self, dynamic: Dynamic, **options: Any) -> None:
        super().__init__(dynamic.function, name=dynamic.name, **options)
        self.dynamic = dynamic
        self.outputs = {"workflow": dict}

    def run_attempt(self, inputs: dict[str, Any]) -> Any:
        return self.dynamic.plan(inputs)


class Dynamic:
    """A Python function whose body wires tasks at run time (see :func:`dynamic`)."""

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        name: str | None,
        uses: Sequence[Task | MapTask],
        retries: int,
        timeout: str | None,
        resources: Resources | None,
        secrets: list[Secret],
        image: str | None,
    ) -> None:
        self.function = function
        self.name = name or function.__name__
        self.inputs, self.defaults, self.outputs = _signature(function)
        self.uses = [used.task if isinstance(used, MapTask) else used for used in uses]
        for used in self.uses:
            if not isinstance(used, Task):
                raise DefinitionError(f"{_where(function)}: {self.name}: uses takes tasks, given {used!r}")
        self.planner = _Planner(
            self,
            cache=None,
            retries=retries,
            timeout=timeout,
            resources=resources,
            secrets=secrets,
            image=image,
        )
        self.__doc__ = function.__doc__

    def plan(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The workflow spec the body wires for these input values (what the planner task returns)."""
        builder = _Builder(None)
        token = _TRACING.set(builder)
        try:
            returned = self.function(**inputs)
        finally:
            _TRACING.reset(token)
        if not builder.nodes:
            # The engine runs a plan of at least one node (an empty workflow does not compile).
            raise DefinitionError(
                f"{_where(self.function)}: {self.name} wired no task for these inputs; a dynamic workflow's "
                "plan must run at least one task"
            )
        allowed = {used.name for used in self.uses}
        for called in builder.tasks:
            if called not in allowed:
                raise DefinitionError(
                    f"{_where(self.function)}: {self.name} called task {called}, which is not in its uses "
                    f"({', '.join(sorted(allowed)) or 'none'})"
                )
        if builder.workflows or builder.launch_plans:
            raise DefinitionError(
                f"{_where(self.function)}: {self.name}: a dynamic workflow may call tasks only, not "
                "workflows or launch plans"
            )
        outputs = _bind_outputs(self.name, self.outputs, returned, _where(self.function), constants=True)
        return {
            "name": f"{self.name}-plan",
            "interface": _interface(self.inputs, self.outputs),
            "nodes": builder.nodes,
            "outputs": outputs,
        }

    def node(self) -> dict[str, Any]:
        """The ``dynamic`` part of the node that runs this in a workflow."""
        return {
            "task": self.planner.name,
            "uses": [used.name for used in self.uses],
            "outputs": {name: literal_type(hint) for name, hint in self.outputs.items()},
        }

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = _TRACING.get()
        if builder is not None:
            if args:
                raise DefinitionError(
                    f"{_caller_location()}: call dynamic workflow {self.name} with named inputs"
                )
            return builder.add_dynamic_node(self, kwargs)
        return call_locally(self.function, self.inputs, self.outputs, args, kwargs)


def dynamic(
    function: Callable[..., Any] | None = None,
    *,
    uses: Sequence[Task | MapTask] = (),
    name: str | None = None,
    retries: int = 0,
    timeout: str | None = None,
    resources: Resources | None = None,
    secrets: list[Secret] | None = None,
    image: str | None = None,
) -> Any:
    """Makes a typed Python function a dynamic workflow: its body calls the tasks in ``uses`` with named
    inputs, and runs when the node runs, with the inputs' values (``retries``, ``timeout``, ``resources``,
    ``secrets`` and ``image`` are the planner task's)."""

    return decorate(
        Dynamic,
        function,
        name=name,
        uses=uses,
        retries=retries,
        timeout=timeout,
        resources=resources,
        secrets=list(secrets or []),
        image=image,
    )
