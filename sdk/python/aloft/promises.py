"""The values of a workflow being defined: promises of inputs and node outputs, the conditions built from
them, ordering (``a >> b``) and per-node overrides. The workflow being traced is held in a context variable.
"""

from __future__ import annotations

import contextvars
import json
from typing import TYPE_CHECKING, Any

from aloft.definition import DefinitionError, _caller_location
from aloft.resources import Resources
from aloft.types import literal_type

if TYPE_CHECKING:
    from aloft.workflow import _Builder

_TRACING: contextvars.ContextVar[_Builder | None] = contextvars.ContextVar("aloft_tracing", default=None)


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


class _NoOutputs(NodeOutputs):
    pass


def _assignable(given: str, wanted: str) -> bool:
    if given == wanted or wanted == f"optional<{given}>":
        return True
    if given.startswith("blob") and wanted.startswith("blob"):
        return given == "blob" or wanted == "blob" or given == wanted
    return False
