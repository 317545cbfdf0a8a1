"""The deployment client's own logic (a live deployment is exercised by ``tests/tests/python_sdk.rs``):
literals as the REST API writes them, back to the values tasks read; an unreachable deployment named in the
error."""

from __future__ import annotations

import datetime as dt

import pytest

from aloft import Remote, RemoteError, task
from aloft.remote import literal_json
from aloft.types import from_json


def test_rest_literals_become_the_values_tasks_read() -> None:
    assert literal_json({"integer": "24"}) == 24
    assert literal_json({"float": 0.5}) == 0.5
    assert literal_json({"string": "a"}) == "a"
    assert literal_json({"boolean": True}) is True
    assert literal_json({"duration_millis": "90000"}) == "90s"
    assert from_json(literal_json({"duration_millis": "90000"}), dt.timedelta) == dt.timedelta(seconds=90)
    assert literal_json({"blob": {"uri": "s3://b/k", "format": "csv"}}) == "s3://b/k"
    nested = {"list": {"values": [{"map": {"values": {"a": {"integer": "1"}}}}, {"none": {}}]}}
    assert literal_json(nested) == [{"a": 1}, None]
    assert literal_json({"struct_json": '{"rows": 3}'}) == {"rows": 3}
    with pytest.raises(ValueError, match="unknown literal kind"):
        literal_json({"mystery": 1})


def test_an_offloaded_value_is_read_through_the_fetch_it_is_given() -> None:
    reference = {"uri": "s3://b/p/d/e/n/1/xs.value", "size": "7", "digest": "sha256:00"}
    listed = {"offloaded": {**reference, "type": {"list": {"simple": "INTEGER"}}}}
    assert literal_json(listed, lambda: "[1,2,3]") == [1, 2, 3]
    text = {"offloaded": {**reference, "type": {"simple": "STRING"}}}
    assert literal_json(text, lambda: "a long text") == "a long text"
    gathered = {"list": {"values": [listed, {"list": {"values": []}}]}}
    assert literal_json(gathered, lambda: "[[1,2,3],[]]") == [[1, 2, 3], []]
    with pytest.raises(ValueError, match="offloaded to the blob store"):
        literal_json(listed)


@task
def inc(n: int) -> int:
    return n + 1


def test_an_unreachable_deployment_is_named_and_bad_inputs_are_refused_before_any_call() -> None:
    remote = Remote("http://127.0.0.1:1")
    with pytest.raises(RemoteError, match=r"cannot reach http://127.0.0.1:1"):
        remote.execution("anything")
    with pytest.raises(RemoteError, match="cannot reach"):
        remote.run(inc, n=1)
