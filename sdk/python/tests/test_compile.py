"""Python workflows compile to the spec documents YAML files give, with definition errors naming the line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aloft import Blob, DefinitionError, LaunchPlan, dynamic, on_email, on_slack, on_webhook, task, workflow
from aloft.compile import documents

REPO = Path(__file__).resolve().parents[3]


def test_the_python_diamond_is_the_yaml_diamond() -> None:
    compiled = documents(str(REPO / "examples/python/diamond.py"))
    workflow_spec = next(d for d in compiled if d["kind"] == "workflow")
    # examples/diamond.yaml, as JSON.
    assert workflow_spec == {
        "kind": "workflow",
        "name": "diamond",
        "interface": {"inputs": {"x": "integer"}, "outputs": {"result": "integer"}},
        "nodes": [
            {"id": "increment", "task": "increment", "inputs": {"n": "inputs.x"}},
            {"id": "double", "task": "double", "inputs": {"n": "increment.n"}},
            {"id": "square", "task": "square", "inputs": {"n": "increment.n"}},
            {"id": "add", "task": "add", "inputs": {"a": "double.n", "b": "square.n"}},
        ],
        "outputs": {"result": "add.sum"},
    }
    tasks = {d["name"]: d for d in compiled if d["kind"] == "task"}
    assert tasks["add"]["interface"] == {
        "inputs": {"a": "integer", "b": "integer"},
        "outputs": {"sum": "integer"},
    }
    assert tasks["add"]["run"]["process"]["command"][1:3] == ["-m", "aloft.execute"]


def test_map_tasks_blobs_caches_and_defaults_compile() -> None:
    compiled = documents(str(REPO / "examples/python/chunks.py"))
    by_name = {(d["kind"], d["name"]): d for d in compiled}
    flow = by_name[("workflow", "chunks")]
    mapped = next(node for node in flow["nodes"] if "map" in node)
    assert mapped["map"] == {"task": "count", "over": "chunk", "concurrency": 4}
    assert mapped["inputs"] == {"chunk": "split.o0"}
    assert by_name[("task", "count")]["cache"] == {"version": "1"}
    assert by_name[("task", "split")]["interface"]["outputs"] == {"o0": "list<blob<fastq>>"}
    plan = by_name[("launch_plan", "chunks")]
    assert plan["default_inputs"] == {"records": 1000, "chunk_size": 300}


@task
def align_sample(sample: dict[str, str]) -> int:
    return len(sample)


def test_a_map_passes_item_resources_on() -> None:
    from aloft import map_task

    @workflow
    def align_all(samples: list[dict[str, str]]) -> list[int]:
        return map_task(align_sample, item_resources={"memory": "{{item.memory}}"})(sample=samples)  # type: ignore[no-any-return]

    mapped = next(node for node in align_all.spec()["nodes"] if "map" in node)
    assert mapped["map"] == {
        "task": "align_sample",
        "over": "sample",
        "item_resources": {"memory": "{{item.memory}}"},
    }


@task
def shout(text: str) -> str:
    return text.upper()


@task
def length(text: str) -> int:
    return len(text)


def test_definition_errors_name_the_file_and_line() -> None:
    @workflow
    def wrong_type(n: int) -> str:
        return shout(text=n)

    with pytest.raises(DefinitionError, match=r"test_compile.py:\d+: shout.text takes string, given integer"):
        wrong_type.spec()

    @workflow
    def missing(text: str) -> str:
        return shout()

    with pytest.raises(DefinitionError, match=r"test_compile.py:\d+: shout: missing text"):
        missing.spec()

    @workflow
    def branching(text: str) -> str:
        if text:
            return shout(text=text)
        return text

    with pytest.raises(DefinitionError, match="not known while the workflow is defined"):
        branching.spec()

    with pytest.raises(DefinitionError, match="has no type hint"):

        @task
        def untyped(x):  # type: ignore[no-untyped-def]
            return x


def test_a_launch_plan_called_in_a_workflow_is_a_launch_plan_node() -> None:
    @workflow
    def measure(text: str, times: int = 2) -> int:
        return length(text=shout(text=text))

    nightly = LaunchPlan(measure, name="measure-nightly", fixed_inputs={"times": 3})

    @workflow
    def parent(text: str) -> int:
        return nightly(text=text)

    spec = parent.spec()
    # Only what the node sets: the plan's default and fixed inputs are applied when the child is launched.
    assert spec["nodes"] == [
        {"id": "measure-nightly", "launch_plan": "measure-nightly", "inputs": {"text": "inputs.text"}}
    ]
    assert spec["outputs"] == {"o0": "measure-nightly.o0"}
    kinds = [(document["kind"], document["name"]) for document in parent.documents()]
    # The plan and everything it runs come before the workflow that launches it (admin resolves the plan
    # when it registers the parent).
    assert kinds.index(("launch_plan", "measure-nightly")) < kinds.index(("workflow", "parent"))
    assert kinds.index(("workflow", "measure")) < kinds.index(("launch_plan", "measure-nightly"))
    plan = next(document for document in parent.documents() if document["name"] == "measure-nightly")
    assert plan["fixed_inputs"] == {"times": 3}
    # In-process, the plan runs its workflow with its defaults and fixed inputs.
    assert nightly(text="abc") == 3

    @workflow
    def sets_fixed(text: str) -> int:
        return nightly(text=text, times=5)

    with pytest.raises(
        DefinitionError, match=r"test_compile.py:\d+: measure-nightly: times fixed by the launch plan"
    ):
        sets_fixed.spec()

    @workflow
    def misses(n: int) -> int:
        return nightly()

    with pytest.raises(DefinitionError, match=r"measure-nightly: missing text"):
        misses.spec()

    @workflow
    def wrong_type(n: int) -> int:
        return nightly(text=n)

    with pytest.raises(DefinitionError, match=r"measure-nightly.text takes string, given integer"):
        wrong_type.spec()


def test_a_dynamic_workflow_is_a_dynamic_node_whose_plan_depends_on_its_inputs() -> None:
    @dynamic(uses=[shout, length])
    def shouted_lengths(words: list[str], times: int) -> int:
        total = length(text="")
        for word in words:
            for _ in range(times):
                word = shout(text=word)
            total = length(text=word)
        return total

    @workflow
    def outer(words: list[str]) -> int:
        return shouted_lengths(words=words, times=2)

    spec = outer.spec()
    assert spec["nodes"] == [
        {
            "id": "shouted_lengths",
            "dynamic": {"task": "shouted_lengths", "uses": ["shout", "length"], "outputs": {"o0": "integer"}},
            "inputs": {"words": "inputs.words", "times": {"value": 2}},
        }
    ]
    names = [(document["kind"], document["name"]) for document in outer.documents()]
    assert ("task", "shouted_lengths") in names and ("task", "shout") in names and ("task", "length") in names
    planner = next(document for document in outer.documents() if document["name"] == "shouted_lengths")
    assert planner["interface"]["outputs"] == {"workflow": "struct"}
    # The plan follows the values: two words, shouted twice each.
    plan = shouted_lengths.plan({"words": ["ab", "c"], "times": 2})
    assert [node["task"] for node in plan["nodes"]] == [
        "length",
        "shout",
        "shout",
        "length",
        "shout",
        "shout",
        "length",
    ]
    assert plan["outputs"] == {"o0": "length-3.o0"}
    # In-process, the body runs with every task run locally.
    assert shouted_lengths(words=["ab", "c"], times=2) == 1

    @dynamic(uses=[shout])
    def strays(text: str) -> int:
        return length(text=text)

    with pytest.raises(DefinitionError, match="strays called task length, which is not in its uses"):
        strays.plan({"text": "x"})

    @dynamic(uses=[length])
    def nothing_to_do(text: str) -> int:
        return 0

    with pytest.raises(DefinitionError, match="nothing_to_do wired no task for these inputs"):
        nothing_to_do.plan({"text": "x"})

    @dynamic(uses=[length])
    def constant_too(text: str) -> tuple[int, int]:
        return length(text=text), 7

    assert constant_too.plan({"text": "x"})["outputs"] == {"o0": "length.o0", "o1": {"value": 7}}


def test_ordering_and_repeated_tasks_get_their_own_nodes() -> None:
    @workflow
    def twice(text: str) -> int:
        first = shout(text=text)
        second = shout(text=first)
        size = length(text=second)
        first >> size
        return size

    spec = twice.spec()
    assert [node["id"] for node in spec["nodes"]] == ["shout", "shout-2", "length"]
    assert spec["nodes"][2]["after"] == ["shout"]


def test_workflows_run_locally_in_plain_python() -> None:
    @workflow
    def loud_length(text: str) -> int:
        return length(text=shout(text=text))

    assert loud_length(text="abc") == 3
    from importlib import import_module

    sys.path.insert(0, str(REPO / "examples/python"))
    try:
        diamond = import_module("diamond")
        assert diamond.diamond(x=3) == 24
        assert diamond.increment(n=1) == 2
        chunks = import_module("chunks")
        assert chunks.chunks(records=10, chunk_size=3) == 10
    finally:
        sys.path.remove(str(REPO / "examples/python"))


class Csv(Blob):
    # `Blob["csv"]` works at run time, but linters read the string in an annotation as a forward reference
    # (ruff even rewrites it to `Blob[csv]`): a subclass is the spelling that type-checks.
    format = "csv"


def test_blob_formats_come_from_subclasses() -> None:
    @task
    def make() -> Csv:
        return Csv("x.csv")

    assert make.spec()["interface"]["outputs"] == {"o0": "blob<csv>"}


def test_the_compile_entrypoint_prints_json_and_reports_errors(tmp_path: Path) -> None:
    good = subprocess.run(
        [sys.executable, "-m", "aloft.compile", str(REPO / "examples/python/diamond.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert [d["kind"] for d in json.loads(good.stdout)] == ["task"] * 4 + ["workflow"]
    bad = tmp_path / "bad.py"
    bad.write_text("from aloft import task\n\n@task\ndef f(x) -> int:\n    return 1\n")
    failed = subprocess.run(
        [sys.executable, "-m", "aloft.compile", str(bad)], capture_output=True, text=True, env={**os.environ}
    )
    assert failed.returncode == 1
    assert f"{bad}:3" in failed.stderr and "has no type hint" in failed.stderr


def test_branches_gates_subworkflows_and_overrides_compile_like_the_yaml() -> None:
    compiled = documents(str(REPO / "examples/python/release.py"))
    by_name = {(d["kind"], d["name"]): d for d in compiled}
    kinds = [(d["kind"], d["name"]) for d in compiled]
    assert kinds.index(("workflow", "plus-two")) < kinds.index(("workflow", "release")), "subworkflows first"
    nodes = {node["id"]: node for node in by_name[("workflow", "release")]["nodes"]}
    assert nodes["size"]["branch"]["cases"] == [
        {"if": "inc.n > 10", "then": {"id": "plus-two", "workflow": "plus-two", "inputs": {"n": "inc.n"}}}
    ]
    assert nodes["size"]["branch"]["else"] == {"id": "inc-2", "task": "inc", "inputs": {"n": "inc.n"}}
    assert nodes["nap"] == {"id": "nap", "gate": {"sleep": "300ms"}, "after": ["size"]}
    assert nodes["bump"]["gate"] == {"signal": {"name": "bump", "type": "integer"}}
    assert nodes["review"]["gate"] == {"approve": {"timeout": "5m"}}
    assert nodes["add"]["inputs"] == {"a": "size.n", "b": "bump.value"}
    assert nodes["add"]["retries"] == {"user": 1}
    assert nodes["add"]["after"] == ["review"]


def test_conditions_combine_and_refuse_python_control_flow() -> None:
    from aloft import branch

    @workflow
    def pick(n: int, mode: str) -> str:
        return branch(
            ((n > 1) & (mode == "fast"), lambda: shout(text=mode)), otherwise=lambda: shout(text="slow")
        )

    spec = pick.spec()
    assert spec["nodes"][0]["branch"]["cases"][0]["if"] == '(inputs.n > 1) and (inputs.mode == "fast")'
    assert spec["outputs"] == {"o0": "branch.o0"}

    @workflow
    def bad(n: int) -> str:
        if n > 1:
            return shout(text="big")
        return shout(text="small")

    with pytest.raises(DefinitionError, match=r"aloft\.branch"):
        bad.spec()
    assert pick(n=2, mode="fast") == "FAST", "locally a branch is a plain if"


def test_launch_plans_carry_notification_rules_as_the_yaml_does() -> None:
    @workflow
    def nightly_work(text: str) -> int:
        return length(text=text)

    plan = LaunchPlan(
        nightly_work,
        name="nightly-work",
        default_inputs={"text": "abc"},
        notifications=[
            on_slack(["FAILED", "TIMED_OUT"], webhook_url="env:SLACK_WEBHOOK_URL"),
            on_webhook(["SUCCEEDED"], url="https://hooks.example.com/aloft", secret="env:ALOFT_HOOK_KEY"),
            on_email(
                ["ABORTED"],
                to=["ml@example.com"],
                sender="aloft@example.com",
                smtp={"host": "smtp.example.com", "port": 587, "password": "file:/run/secrets/smtp"},
            ),
        ],
    )
    rules = plan.spec()["notifications"]
    assert rules[0] == {"phases": ["FAILED", "TIMED_OUT"], "slack": {"webhook_url": "env:SLACK_WEBHOOK_URL"}}
    assert rules[1]["webhook"] == {"url": "https://hooks.example.com/aloft", "secret": "env:ALOFT_HOOK_KEY"}
    assert rules[2]["email"]["from"] == "aloft@example.com"
    assert "notifications" not in LaunchPlan(nightly_work, name="quiet").spec()
    with pytest.raises(DefinitionError, match=r"test_compile.py:\d+: a notification names one or more of"):
        on_slack(["DONE"], webhook_url="env:X")
