"""Where definition errors come from: the error type, and the user's file and line it names."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any


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
