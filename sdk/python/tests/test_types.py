"""Python values round-trip through the engine's text form, for every supported type (property-tested)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from typing import Annotated, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aloft import AloftTypeError, Blob, Columns, task
from aloft.schemas import json_schema
from aloft.types import from_text, literal_type, parse_duration, to_text


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@dataclasses.dataclass
class Point:
    x: int
    label: str
    tags: list[str]


def test_type_hints_map_to_aloft_types() -> None:
    assert literal_type(int) == "integer"
    assert literal_type(float) == "float"
    assert literal_type(bool) == "boolean"
    assert literal_type(str) == "string"
    assert literal_type(dt.datetime) == "datetime"
    assert literal_type(dt.timedelta) == "duration"
    assert literal_type(Blob) == "blob"
    assert literal_type(Blob["csv"]) == "blob<csv>"
    assert literal_type(list[dict[str, Optional[float]]]) == "list<map<optional<float>>>"
    assert literal_type(int | None) == "optional<integer>"
    assert literal_type(Point) == "struct"
    assert literal_type(Color) == "string"


def test_types_without_an_aloft_equivalent_are_refused_by_name() -> None:
    with pytest.raises(AloftTypeError, match="string keys"):
        literal_type(dict[int, str])
    with pytest.raises(AloftTypeError, match="has no Aloft type"):
        literal_type(complex)
    with pytest.raises(AloftTypeError, match="Optional"):
        literal_type(int | str)


def test_text_forms_match_the_engine() -> None:
    assert to_text(42, int) == "42"
    assert to_text(True, bool) == "true"
    assert to_text("hi\n", str) == "hi\n"
    assert to_text(dt.timedelta(seconds=90), dt.timedelta) == "90s"
    assert to_text(dt.timedelta(milliseconds=250), dt.timedelta) == "250ms"
    assert to_text([1, 2], list[int]) == "[1, 2]"
    assert to_text(None, Optional[int]) == ""
    assert from_text("42\n", int) == 42
    assert from_text("yes", bool) is True
    assert from_text("1h30m", dt.timedelta) == dt.timedelta(minutes=90)
    assert from_text("2026-12-06", dt.datetime) == dt.datetime(2026, 12, 6, tzinfo=dt.timezone.utc)
    assert from_text("", Optional[int]) is None
    assert from_text("s3://bucket/x.csv", Blob["csv"]) == Blob["csv"]("s3://bucket/x.csv")


def test_bad_values_name_what_is_wrong() -> None:
    with pytest.raises(AloftTypeError, match="expected an integer"):
        from_text("4.5", int)
    with pytest.raises(AloftTypeError, match="not a duration"):
        parse_duration("soon")
    with pytest.raises(AloftTypeError, match="expected int, got bool"):
        to_text(True, int)


scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda v: (v, int)),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda v: (v, float)),
    # The engine's text form drops a string's trailing newline and reads blank text as None.
    st.text()
    .filter(lambda v: not v.endswith("\n") and v.strip() not in ("", "null"))
    .map(lambda v: (v, str)),
    st.booleans().map(lambda v: (v, bool)),
    st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=999)).map(
        lambda v: (dt.timedelta(milliseconds=round(v.total_seconds() * 1000)), dt.timedelta)
    ),
    st.datetimes(timezones=st.just(dt.timezone.utc)).map(lambda v: (v, dt.datetime)),
    st.sampled_from(list(Color)).map(lambda v: (v, Color)),
    st.from_regex(r"[a-z0-9/._-]{1,20}", fullmatch=True).map(lambda v: (Blob["csv"](v), Blob["csv"])),
)


@st.composite
def typed_values(draw: st.DrawFn, depth: int = 2) -> tuple[object, object]:
    if depth == 0:
        return draw(scalars)
    kind = draw(st.sampled_from(["scalar", "list", "map", "optional"]))
    if kind == "scalar":
        return draw(scalars)
    value, hint = draw(typed_values(depth - 1))
    if kind == "list":
        extra = draw(st.lists(st.just(value), max_size=3))
        return [value, *extra], list[hint]  # type: ignore[valid-type]
    if kind == "map":
        key = draw(st.text(min_size=1, max_size=5))
        return {key: value}, dict[str, hint]  # type: ignore[valid-type]
    return draw(st.sampled_from([value, None])), Optional[hint]  # type: ignore[valid-type]


@given(typed_values())
def test_every_type_round_trips_through_its_text_form(case: tuple[object, object]) -> None:
    value, hint = case
    assert from_text(to_text(value, hint), hint) == value


def test_structs_round_trip_as_dataclasses() -> None:
    point = Point(x=3, label="p", tags=["a", "b"])
    assert to_text(point, Point) == '{"x": 3, "label": "p", "tags": ["a", "b"]}'
    assert from_text(to_text(point, Point), Point) == point


def test_pydantic_models_are_structs_validated_on_the_way_in() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Split(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        rows: int
        ratio: float = 0.8
        tags: list[str] = pydantic.Field(default_factory=list)

    assert literal_type(Split) == "struct"
    assert literal_type(list[Split]) == "list<struct>"
    text = to_text(Split(rows=10, tags=["a"]), Split)
    assert text == '{"rows": 10, "ratio": 0.8, "tags": ["a"]}'
    assert from_text(text, Split) == Split(rows=10, tags=["a"])
    with pytest.raises(AloftTypeError, match="not a valid Split"):
        from_text('{"rows": "many"}', Split)


def test_dataframes_travel_as_parquet_blobs_with_their_columns() -> None:
    pandas = pytest.importorskip("pandas")
    pyarrow = pytest.importorskip("pyarrow")
    frame = pandas.DataFrame({"gene": ["BRCA1", "TP53"], "count": [12, 7]})
    assert literal_type(pandas.DataFrame) == "blob<parquet>"
    path = to_text(frame, pandas.DataFrame)
    assert path.endswith(".parquet")
    back = from_text(path, pandas.DataFrame)
    assert list(back.columns) == ["gene", "count"]
    assert back.equals(frame)
    table = pyarrow.table({"x": [1, 2, 3]})
    assert literal_type(pyarrow.Table) == "blob<parquet>"
    assert from_text(to_text(table, pyarrow.Table), pyarrow.Table).equals(table)
    with pytest.raises(AloftTypeError):
        to_text([1, 2], pandas.DataFrame)


def test_declared_columns_are_in_the_interface_and_checked_both_ways() -> None:
    pandas = pytest.importorskip("pandas")
    pyarrow = pytest.importorskip("pyarrow")
    Counts = Annotated[pandas.DataFrame, Columns(gene=str, count=int)]
    assert literal_type(Counts) == "blob<parquet>"
    assert json_schema(Counts)["columns"] == {"gene": "string", "count": "integer"}
    good = pandas.DataFrame({"gene": ["BRCA1"], "count": [12], "extra": [1.0]})
    path = to_text(good, Counts)
    assert list(from_text(path, Counts).columns) == ["gene", "count", "extra"]
    with pytest.raises(
        AloftTypeError, match="no column 'count' that Columns\\(gene=str, count=int\\) declares"
    ):
        to_text(pandas.DataFrame({"gene": ["TP53"]}), Counts)
    # Read back: a parquet file written without the column is refused too (a pyarrow table here).
    narrow = to_text(pyarrow.table({"gene": ["TP53"]}), pyarrow.Table)
    with pytest.raises(AloftTypeError, match=r"reading .*no column 'count'"):
        from_text(narrow, Annotated[pyarrow.Table, Columns(gene=str, count=int)])
    with pytest.raises(AloftTypeError, match="Columns\\(\\) needs at least one column"):
        Columns()


def test_structs_enums_and_models_carry_their_schema_in_the_interface() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Split(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        rows: int
        ratio: float = 0.8

    @task
    def describe(point: Point, color: Color, n: int, points: list[Optional[Point]]) -> Color:
        return color

    interface = describe.spec()["interface"]
    schemas = interface["input_schemas"]
    # Plain types say everything: no schema for them.
    assert set(schemas) == {"point", "color", "points"}
    assert schemas["point"] == {
        "title": "Point",
        "type": "object",
        "properties": {
            "x": {"type": "integer"},
            "label": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["x", "label", "tags"],
    }
    assert schemas["color"] == {"title": "Color", "type": "string", "enum": ["red", "green"]}
    # A pydantic model's schema is the model's own (the annotation is resolved in the task's module, so
    # the model is checked here directly).
    assert json_schema(Split) == Split.model_json_schema()
    assert json_schema(Optional[Split])["anyOf"][0]["properties"]["ratio"]["default"] == 0.8
    assert schemas["points"]["items"]["anyOf"][0]["title"] == "Point"
    assert interface["output_schemas"] == {"o0": schemas["color"]}
