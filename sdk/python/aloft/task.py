"""Tasks: ``@task`` over a typed function (its interface from the hints, its spec document, how it runs) and
``map_task`` over one; outside a workflow being defined, calling either runs the function in-process.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
import typing
from collections.abc import Callable
from typing import Any

from aloft.definition import DefinitionError, _caller_location, _where
from aloft.promises import _TRACING, Promise
from aloft.resources import Resources, Secret
from aloft.schemas import variable_schemas
from aloft.types import AloftTypeError, from_json, literal_type, to_json


class RecoverableError(Exception):
    """Raised by a task whose failure may pass on a retry (it counts against ``retries``)."""


def _output_hints(function: Callable[..., Any], returns: Any) -> dict[str, Any]:
    """Named outputs of a function from its return annotation: a NamedTuple's fields, a tuple's ``o0``,
    ``o1``, ..., one value as ``o0``, nothing for ``None``."""
    if returns is None or returns is type(None) or returns is inspect.Signature.empty:
        return {}
    if isinstance(returns, type) and issubclass(returns, tuple) and hasattr(returns, "_fields"):
        return dict(typing.get_type_hints(returns, include_extras=True))
    if typing.get_origin(returns) is tuple:
        return {f"o{index}": hint for index, hint in enumerate(typing.get_args(returns))}
    return {"o0": returns}


def _signature(function: Callable[..., Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Input hints, input defaults and output hints of ``function``; every parameter must be annotated."""
    try:
        hints = typing.get_type_hints(function, include_extras=True)
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
    interface: dict[str, Any] = {
        "inputs": {name: literal_type(hint) for name, hint in inputs.items()},
        "outputs": {name: literal_type(hint) for name, hint in outputs.items()},
    }
    # Structs, enums and dataframes keep their shape in the interface (admin and the console show it).
    for side, hints in (("input_schemas", inputs), ("output_schemas", outputs)):
        schemas = variable_schemas(hints)
        if schemas:
            interface[side] = schemas
    return interface


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

    def run_attempt(self, inputs: dict[str, Any]) -> Any:
        """What an attempt of this task returns for ``inputs`` (already converted by their types)."""
        return self.function(**inputs)

    def run_locally(self, *args: Any, **kwargs: Any) -> Any:
        """Calls the function as an attempt would: inputs through their declared types, and a one-output
        result as that value (a workflow sees a one-output task as its value, not a one-field tuple)."""
        return call_locally(self.function, self.inputs, self.outputs, args, kwargs)


def call_locally(
    function: Callable[..., Any],
    inputs: dict[str, Any],
    outputs: dict[str, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Runs ``function`` with real values as an attempt sees them: every input through its declared type's
    JSON form and back, and a one-output result as that value. Local task calls and workflow bodies share
    it."""
    bound = inspect.signature(function).bind(*args, **kwargs)
    bound.apply_defaults()
    converted = {
        name: from_json(to_json(value, inputs[name]), inputs[name]) for name, value in bound.arguments.items()
    }
    return single_output(outputs, function(**converted))


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

    return decorate(
        Task,
        function,
        name=name,
        cache=cache,
        retries=retries,
        timeout=timeout,
        resources=resources,
        secrets=list(secrets or []),
        image=image,
    )


def decorate(make: Callable[..., Any], function: Callable[..., Any] | None, **options: Any) -> Any:
    """``make(function, **options)`` for a bare decorator (``@task``), else the decorator that does it once
    it is given the function (``@task(retries=2)``)."""

    def wrap(inner: Callable[..., Any]) -> Any:
        return make(inner, **options)

    return wrap(function) if function is not None else wrap


class MapTask:
    """``map_task(t)(over=list_promise, other=...)``: one node running ``t`` once per item of a list input."""

    def __init__(
        self,
        inner: Task,
        concurrency: int | None,
        min_success_ratio: float | None,
        item_resources: dict[str, str] | None = None,
    ) -> None:
        self.task = inner
        self.concurrency = concurrency
        self.min_success_ratio = min_success_ratio
        self.item_resources = item_resources

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


def map_task(
    inner: Task,
    concurrency: int | None = None,
    min_success_ratio: float | None = None,
    item_resources: dict[str, str] | None = None,
) -> MapTask:
    """A map node over ``inner``: call it with one input given a list; each output becomes a list.

    ``item_resources`` lets each item ask for its own resources, read from the item (a dataclass or dict):
    ``{"memory": "{{item.memory}}"}``; each field is a quantity or ``{{item.FIELD}}``.
    """
    if not isinstance(inner, Task):
        raise DefinitionError(f"{_caller_location()}: map_task takes a @task, got {inner!r}")
    return MapTask(inner, concurrency, min_success_ratio, item_resources)
