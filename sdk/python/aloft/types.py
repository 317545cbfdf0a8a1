"""Python type hints as Aloft literal types, and Python values in the text form tasks read and write.

The text form is the engine's (``libs/core/src/types.rs``): scalars bare (``42``, ``true``,
``2026-12-06T10:00:00+00:00``, ``90s``), lists, maps and structs as JSON, blobs as their path or URI,
``None`` as empty text.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import os
import re
import types
import typing
from typing import Any, ClassVar, Union


class AloftTypeError(TypeError):
    """A Python type or value that has no Aloft equivalent; the message names it."""


class Blob:
    """A file (or directory) passed between tasks through the blob store.

    ``Blob["csv"]`` is a blob of format ``csv``; for type checkers, declare it as a subclass
    (``class Csv(Blob): format = "csv"``). A task returns ``Blob(path)`` for a file it wrote; it receives
    ``Blob`` values whose ``path`` is a local file (downloaded before it started) or whose ``uri`` names where
    the data lives.
    """

    format: ClassVar[str] = ""
    _formats: ClassVar[dict[str, type[Blob]]] = {}

    def __init__(self, path: str) -> None:
        self.path = str(path)

    @property
    def uri(self) -> str:
        return self.path

    def read_bytes(self) -> bytes:
        with open(self.path, "rb") as file:
            return file.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def __class_getitem__(cls, format: str) -> type[Blob]:
        if not isinstance(format, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", format):
            raise AloftTypeError(f"Blob[{format!r}]: a blob format is a word such as 'csv'")
        if format not in Blob._formats:
            Blob._formats[format] = type(f"Blob[{format}]", (Blob,), {"format": format})
        return Blob._formats[format]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Blob) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        suffix = f"[{self.format!r}]" if self.format else ""
        return f"Blob{suffix}({self.path!r})"


def _origin(hint: Any) -> Any:
    return typing.get_origin(hint)


class Columns:
    """The columns a dataframe has: ``Annotated[pandas.DataFrame, Columns(id=int, score=float)]``. They are
    part of the task's interface (its schema, which admin and the console show) and are checked whenever
    such a frame is written or read: a frame without a declared column is refused, naming it."""

    def __init__(self, **columns: Any) -> None:
        if not columns:
            raise AloftTypeError("Columns() needs at least one column: Columns(name=type, ...)")
        self.columns: dict[str, Any] = columns
        for name, hint in columns.items():
            literal_type(hint)  # an unknown column type is refused where it is declared
            if name != name.strip() or not name:
                raise AloftTypeError(f"column name {name!r} is not a name")

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(hint, '__name__', hint)}" for name, hint in self.columns.items())
        return f"Columns({inner})"

    def check(self, frame: Any, where: str) -> None:
        """Raises ``AloftTypeError`` naming the declared columns ``frame`` lacks."""
        present = list(frame.columns) if hasattr(frame, "to_parquet") else list(frame.column_names)
        missing = [name for name in self.columns if name not in present]
        if missing:
            raise AloftTypeError(
                f"{where}: the frame has no column {', '.join(repr(name) for name in missing)} that {self!r} "
                f"declares (it has {', '.join(repr(str(name)) for name in present) or 'none'})"
            )


def unannotated(hint: Any) -> tuple[Any, Columns | None]:
    """``T`` and its ``Columns`` for ``Annotated[T, Columns(...)]``; ``hint`` itself otherwise."""
    if typing.get_origin(hint) is typing.Annotated:
        base, *extras = typing.get_args(hint)
        return base, next((extra for extra in extras if isinstance(extra, Columns)), None)
    return hint, None


def frame_kind(hint: Any) -> str | None:
    """``pandas`` for a pandas DataFrame, ``pyarrow`` for a pyarrow Table, else None: dataframes travel as
    parquet blobs (``pip install 'aloft[dataframes]'``). Known by name, so the SDK needs neither library where
    the user's code does not use them."""
    if not isinstance(hint, type):
        return None
    module, name = hint.__module__.split(".")[0], hint.__name__
    if module == "pandas" and name == "DataFrame":
        return "pandas"
    if module == "pyarrow" and name == "Table":
        return "pyarrow"
    return None


def frame_to_parquet(value: Any, hint: Any) -> str:
    """Writes a dataframe to a parquet file of its own and returns the file's path."""
    import tempfile

    directory = tempfile.mkdtemp(prefix="aloft-frame-")
    path = os.path.join(directory, "frame.parquet")
    if frame_kind(hint) == "pandas":
        value.to_parquet(path, index=False)
    else:
        import pyarrow.parquet

        pyarrow.parquet.write_table(value, path)
    return path


def _frame_from_parquet(path: str, hint: Any) -> Any:
    if frame_kind(hint) == "pandas":
        import pandas

        return pandas.read_parquet(path)
    import pyarrow.parquet

    return pyarrow.parquet.read_table(path)


def _is_model(hint: Any) -> bool:
    """Whether ``hint`` is a pydantic (v2) model class: a struct, checked by the model on the way in. Known by
    its methods, so the SDK needs pydantic only where the user's code uses it."""
    return isinstance(hint, type) and all(
        callable(getattr(hint, method, None))
        for method in ("model_validate", "model_dump", "model_json_schema")
    )


def _optional_inner(hint: Any) -> Any | None:
    """``T`` for ``Optional[T]`` / ``T | None``; ``None`` for anything else."""
    origin = _origin(hint)
    if origin is Union or origin is types.UnionType:
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0]
        raise AloftTypeError(f"{hint}: only Optional[T] unions have an Aloft type")
    return None


def literal_type(hint: Any) -> str:
    """The Aloft type of a Python type hint (``int`` -> ``integer``, ``list[float]`` -> ``list<float>``)."""
    hint, _ = unannotated(hint)
    inner = _optional_inner(hint)
    if inner is not None:
        return f"optional<{literal_type(inner)}>"
    origin = _origin(hint)
    if origin in (list, typing.List):  # noqa: UP006 - the alias is what typing hands back
        (item,) = typing.get_args(hint) or (None,)
        if item is None:
            raise AloftTypeError("list needs its item type: list[int]")
        return f"list<{literal_type(item)}>"
    if origin in (dict, typing.Dict):  # noqa: UP006
        args = typing.get_args(hint)
        if len(args) != 2 or args[0] is not str:
            raise AloftTypeError(f"{hint}: Aloft maps have string keys: dict[str, T]")
        return f"map<{literal_type(args[1])}>"
    if frame_kind(hint) is not None:
        return "blob<parquet>"
    if isinstance(hint, type):
        if issubclass(hint, Blob):
            return f"blob<{hint.format}>" if hint.format else "blob"
        if issubclass(hint, bool):
            return "boolean"
        if issubclass(hint, enum.Enum):
            return "string"
        if issubclass(hint, int):
            return "integer"
        if issubclass(hint, float):
            return "float"
        if issubclass(hint, str):
            return "string"
        if issubclass(hint, dt.datetime):
            return "datetime"
        if issubclass(hint, dt.timedelta):
            return "duration"
        if dataclasses.is_dataclass(hint) or hint is dict or _is_model(hint):
            return "struct"
    raise AloftTypeError(
        f"{hint!r} has no Aloft type; use int, float, str, bool, datetime, timedelta, Blob, list[T], "
        "dict[str, T], Optional[T], an Enum or a dataclass"
    )


_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def format_duration(value: dt.timedelta) -> str:
    millis = round(value.total_seconds() * 1000)
    return f"{millis}ms" if millis % 1000 else f"{millis // 1000}s"


def parse_duration(text: str) -> dt.timedelta:
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return dt.timedelta(seconds=int(text))
    position, millis = 0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        millis += int(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise AloftTypeError(f"{text!r} is not a duration (e.g. 250ms, 30s, 5m, 1h30m, 2d)")
    return dt.timedelta(milliseconds=millis)


def to_json(value: Any, hint: Any) -> Any:
    """``value`` as the plain JSON the engine stores for type ``hint``."""
    hint, columns = unannotated(hint)
    inner = _optional_inner(hint)
    if inner is not None:
        return None if value is None else to_json(value, inner)
    origin = _origin(hint)
    if origin in (list, typing.List):  # noqa: UP006
        (item,) = typing.get_args(hint)
        _expect(value, (list, tuple), hint)
        return [to_json(element, item) for element in value]
    if origin in (dict, typing.Dict):  # noqa: UP006
        _, item = typing.get_args(hint)
        _expect(value, dict, hint)
        return {str(key): to_json(element, item) for key, element in value.items()}
    if frame_kind(hint) is not None:
        if isinstance(value, Blob):
            return value.path
        _expect(value, hint, hint)
        if columns is not None:
            columns.check(value, "writing a dataframe")
        return frame_to_parquet(value, hint)
    if isinstance(hint, type):
        if issubclass(hint, Blob):
            _expect(value, Blob, hint)
            return value.path
        if issubclass(hint, enum.Enum):
            _expect(value, hint, hint)
            return value.value if isinstance(value.value, str) else value.name
        if issubclass(hint, bool):
            _expect(value, bool, hint)
            return value
        if issubclass(hint, int):
            if isinstance(value, bool):
                raise AloftTypeError(f"expected int, got bool {value!r}")
            _expect(value, int, hint)
            return value
        if issubclass(hint, float):
            _expect(value, (int, float), hint)
            return float(value)
        if issubclass(hint, str):
            _expect(value, str, hint)
            return value
        if issubclass(hint, dt.datetime):
            _expect(value, dt.datetime, hint)
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.timezone.utc)
            return value.isoformat()
        if issubclass(hint, dt.timedelta):
            _expect(value, dt.timedelta, hint)
            return format_duration(value)
        if dataclasses.is_dataclass(hint):
            _expect(value, hint, hint)
            hints = typing.get_type_hints(hint, include_extras=True)
            return {
                field.name: to_json(getattr(value, field.name), hints[field.name])
                for field in dataclasses.fields(hint)
            }
        if _is_model(hint):
            _expect(value, hint, hint)
            return value.model_dump(mode="json")
        if hint is dict:
            _expect(value, dict, hint)
            return json.loads(json.dumps(value))
    raise AloftTypeError(f"{hint!r} has no Aloft type")


def from_json(data: Any, hint: Any) -> Any:
    """The Python value of type ``hint`` that plain JSON ``data`` stands for."""
    hint, columns = unannotated(hint)
    inner = _optional_inner(hint)
    if inner is not None:
        return None if data is None else from_json(data, inner)
    origin = _origin(hint)
    if origin in (list, typing.List):  # noqa: UP006
        (item,) = typing.get_args(hint)
        _expect(data, list, hint)
        return [from_json(element, item) for element in data]
    if origin in (dict, typing.Dict):  # noqa: UP006
        _, item = typing.get_args(hint)
        _expect(data, dict, hint)
        return {key: from_json(element, item) for key, element in data.items()}
    if frame_kind(hint) is not None:
        _expect(data, str, hint)
        frame = _frame_from_parquet(data, hint)
        if columns is not None:
            columns.check(frame, f"reading {data}")
        return frame
    if isinstance(hint, type):
        if issubclass(hint, Blob):
            _expect(data, str, hint)
            return hint(data)
        if issubclass(hint, enum.Enum):
            _expect(data, str, hint)
            for member in hint:
                if member.value == data or member.name == data:
                    return member
            raise AloftTypeError(f"{data!r} is not a {hint.__name__}")
        if issubclass(hint, bool):
            _expect(data, bool, hint)
            return data
        if issubclass(hint, int):
            if isinstance(data, bool) or not isinstance(data, int):
                raise AloftTypeError(f"expected an integer, got {data!r}")
            return data
        if issubclass(hint, float):
            _expect(data, (int, float), hint)
            return float(data)
        if issubclass(hint, str):
            _expect(data, str, hint)
            return data
        if issubclass(hint, dt.datetime):
            return parse_datetime(data)
        if issubclass(hint, dt.timedelta):
            _expect(data, str, hint)
            return parse_duration(data)
        if dataclasses.is_dataclass(hint):
            _expect(data, dict, hint)
            hints = typing.get_type_hints(hint, include_extras=True)
            return hint(
                **{
                    field.name: from_json(data.get(field.name), hints[field.name])
                    for field in dataclasses.fields(hint)
                }
            )
        if _is_model(hint):
            _expect(data, dict, hint)
            try:
                return getattr(hint, "model_validate")(data)  # noqa: B009 - a model known by its methods
            except ValueError as error:  # pydantic's ValidationError is a ValueError
                raise AloftTypeError(f"not a valid {hint.__name__}: {error}") from error
        if hint is dict:
            _expect(data, dict, hint)
            return data
    raise AloftTypeError(f"{hint!r} has no Aloft type")


def parse_datetime(data: Any) -> dt.datetime:
    _expect(data, str, dt.datetime)
    text = data.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


_SCALARS = {"integer", "float", "boolean", "string", "datetime", "duration"}


def to_text(value: Any, hint: Any) -> str:
    """The text a task writes to an output file (and reads from an input file) for ``value``."""
    data = to_json(value, hint)
    kind = literal_type(hint)
    if data is None:
        return ""
    if kind == "string" or kind.startswith("blob") or kind in ("datetime", "duration"):
        return str(data)
    if kind.startswith("optional<"):
        inner = _optional_inner(hint)
        return to_text(value, inner)
    return json.dumps(data)


def from_text(text: str, hint: Any) -> Any:
    """The value of type ``hint`` written as ``text`` (an input file, or ``--input NAME=TEXT``)."""
    inner = _optional_inner(hint)
    if inner is not None:
        return None if text.strip() in ("", "null") else from_text(text, inner)
    kind = literal_type(hint)
    if kind == "string":
        return from_json(text.rstrip("\n"), hint)
    if kind.startswith("blob") or kind in ("datetime", "duration"):
        return from_json(text.strip(), hint)
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "1"):
            return True
        if lowered in ("false", "no", "0"):
            return False
        raise AloftTypeError(f"{text.strip()!r} is not a boolean (true/false)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise AloftTypeError(f"expected JSON for {kind}: {error}") from error
    return from_json(data, hint)


def _expect(value: Any, expected: type | tuple[type, ...], hint: Any) -> None:
    if not isinstance(value, expected):
        name = getattr(hint, "__name__", str(hint))
        raise AloftTypeError(f"expected {name}, got {type(value).__name__} {value!r}")
