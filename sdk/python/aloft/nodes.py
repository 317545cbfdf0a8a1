"""The node kinds besides tasks and maps: ``branch`` (the first case whose condition holds runs) and the gates
``gate.sleep``, ``gate.signal`` and ``gate.approve``, compiled to the engine's ``branch`` and ``gate`` nodes.

    size = branch((prep > 10, lambda: plus_two(n=prep)), otherwise=lambda: inc(n=prep))
    bump = gate.signal("bump", int)          # `aloft signal EXECUTION bump 19`; its value is a promise
    gate.approve(timeout="5m") >> total      # `aloft approve EXECUTION approve`
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from aloft.definition import DefinitionError, _caller_location
from aloft.promises import Condition, NodeOutputs, Promise, _NoOutputs, current_builder
from aloft.types import literal_type


def _no_outputs(node: str) -> _NoOutputs:
    nothing = _NoOutputs()
    nothing.node = node
    return nothing


def branch(
    *cases: tuple[Condition | bool, Callable[[], Any]],
    otherwise: Callable[[], Any] | None = None,
    name: str = "branch",
) -> Any:
    """Runs the node of the first case whose condition holds (``otherwise`` when none does; without it, no
    match fails the node). Each case calls exactly one task or workflow; the branch's outputs are that
    node's."""
    where = _caller_location()
    if not cases:
        raise DefinitionError(f"{where}: branch needs at least one (condition, lambda: node) case")
    builder = current_builder()
    if builder is None:
        # Local execution: conditions are plain booleans here.
        for condition, make in cases:
            if condition:
                return make()
        if otherwise is None:
            raise DefinitionError(f"{where}: no case of the branch holds and it has no otherwise")
        return otherwise()
    node_id = builder._node_id(name)
    spec_cases = []
    first_returned: Any = None
    for index, (condition, make) in enumerate(cases):
        if not isinstance(condition, Condition):
            raise DefinitionError(
                f"{where}: case {index + 1} of the branch needs a condition on workflow values "
                f"(e.g. prep > 10), got {condition!r}"
            )
        node, returned = builder.capture(make, where)
        first_returned = returned if index == 0 else first_returned
        spec_cases.append({"if": condition.text, "then": node})
    spec: dict[str, Any] = {"cases": spec_cases}
    if otherwise is not None:
        spec["else"], _ = builder.capture(otherwise, where)
    builder.nodes.append({"id": node_id, "branch": spec})
    promises = [first_returned] if isinstance(first_returned, Promise) else list(first_returned or [])
    outputs = [
        Promise(f"{node_id}.{promise.binding.rsplit('.', 1)[1]}", promise.hint, node_id)
        for promise in promises
        if isinstance(promise, Promise)
    ]
    if not outputs:
        return _no_outputs(node_id)
    if len(outputs) == 1:
        return outputs[0]
    grouped = NodeOutputs(outputs)
    grouped.node = node_id
    return grouped


def _gate(name: str, spec: Any) -> str:
    builder = current_builder()
    if builder is None:
        raise DefinitionError(
            f"{_caller_location()}: gates wait on the fleet; they cannot run in plain Python"
        )
    node_id = builder._node_id(name)
    builder.nodes.append({"id": node_id, "gate": spec})
    return node_id


def sleep(duration: str, name: str = "sleep") -> _NoOutputs:
    """Waits ``duration`` (``30s``, ``1h``) before the nodes ordered after it (``>>``)."""
    return _no_outputs(_gate(name, {"sleep": duration}))


def signal(name: str, value_type: type | None = None, timeout: str | None = None) -> Any:
    """Waits for ``aloft signal EXECUTION NAME VALUE``; with ``value_type``, the value is a promise."""
    spec: dict[str, Any] = {"name": name}
    if value_type is not None:
        spec["type"] = literal_type(value_type)
    if timeout is not None:
        spec["timeout"] = timeout
    node_id = _gate(name, {"signal": spec})
    if value_type is None:
        return _no_outputs(node_id)
    return Promise(f"{node_id}.value", value_type, node_id)


def approve(timeout: str | None = None, name: str = "approve") -> _NoOutputs:
    """Waits for ``aloft approve EXECUTION NODE``."""
    return _no_outputs(_gate(name, {"approve": {"timeout": timeout} if timeout else {}}))


gate = types.SimpleNamespace(sleep=sleep, signal=signal, approve=approve)
