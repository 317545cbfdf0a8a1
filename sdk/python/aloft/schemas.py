"""JSON Schemas of Python type hints, carried in a task's or workflow's interface for the variables whose
Aloft type alone does not say their shape: a struct's fields (a dataclass or pydantic model), an enum's
values, a dataframe's columns. Admin stores them with the spec and answers them with the interface; the
engine checks values by their Aloft type only."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import typing
from typing import Any

from aloft.types import Blob, _is_model, _optional_inner, frame_kind, literal_type, unannotated


def json_schema(hint: Any) -> dict[str, Any]:
    """The JSON Schema of the plain JSON a value of type ``hint`` is stored as."""
    hint, columns = unannotated(hint)
    inner = _optional_inner(hint)
    if inner is not None:
        return {"anyOf": [json_schema(inner), {"type": "null"}]}
    origin = typing.get_origin(hint)
    if origin in (list, typing.List):  # noqa: UP006 - the alias is what typing hands back
        (item,) = typing.get_args(hint)
        return {"type": "array", "items": json_schema(item)}
    if origin in (dict, typing.Dict):  # noqa: UP006
        _, item = typing.get_args(hint)
        return {"type": "object", "additionalProperties": json_schema(item)}
    if frame_kind(hint) is not None:
        frame: dict[str, Any] = {
            "type": "string",
            "format": "uri",
            "contentMediaType": "application/vnd.apache.parquet",
        }
        if columns is not None:
            frame["columns"] = {name: literal_type(column) for name, column in columns.columns.items()}
        return frame
    if isinstance(hint, type):
        if issubclass(hint, Blob):
            return {"type": "string", "format": "uri"}
        if issubclass(hint, enum.Enum):
            values = [member.value if isinstance(member.value, str) else member.name for member in hint]
            return {"title": hint.__name__, "type": "string", "enum": values}
        if issubclass(hint, bool):
            return {"type": "boolean"}
        if issubclass(hint, int):
            return {"type": "integer"}
        if issubclass(hint, float):
            return {"type": "number"}
        if issubclass(hint, str):
            return {"type": "string"}
        if issubclass(hint, dt.datetime):
            return {"type": "string", "format": "date-time"}
        if issubclass(hint, dt.timedelta):
            return {"type": "string", "format": "duration"}
        if dataclasses.is_dataclass(hint):
            hints = typing.get_type_hints(hint, include_extras=True)
            fields = dataclasses.fields(hint)
            required = [
                field.name
                for field in fields
                if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
            ]
            schema: dict[str, Any] = {
                "title": hint.__name__,
                "type": "object",
                "properties": {field.name: json_schema(hints[field.name]) for field in fields},
            }
            if required:
                schema["required"] = required
            return schema
        if _is_model(hint):
            model_schema: dict[str, Any] = getattr(hint, "model_json_schema")()  # noqa: B009 - known by its methods
            return model_schema
    return {"type": "object"}


def _shaped(hint: Any) -> bool:
    """Whether the Aloft type of ``hint`` leaves out part of its shape (fields, enum values, columns)."""
    hint, columns = unannotated(hint)
    if columns is not None:
        return True
    inner = _optional_inner(hint)
    if inner is not None:
        return _shaped(inner)
    if typing.get_origin(hint) in (list, typing.List, dict, typing.Dict):  # noqa: UP006
        return any(_shaped(argument) for argument in typing.get_args(hint))
    return isinstance(hint, type) and (
        issubclass(hint, enum.Enum) or dataclasses.is_dataclass(hint) or _is_model(hint)
    )


def variable_schemas(hints: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The schemas of the variables in ``hints`` whose type alone does not say their shape."""
    return {name: json_schema(hint) for name, hint in hints.items() if _shaped(hint)}
