"""examples/release.yaml in Python: a branch whose case runs a subworkflow, and gates that sleep, wait for a
typed signal and for an approval.

    aloft dev &
    aloft register -f examples/python/release.py
    aloft run release --input x=20
    aloft signal EXECUTION bump 19
    aloft approve EXECUTION review       # result: 23 + 19 = 42
"""

from typing import NamedTuple

from aloft import branch, gate, task, workflow


class N(NamedTuple):
    n: int


class Result(NamedTuple):
    result: int


@task
def inc(n: int) -> N:
    return N(n + 1)


@task
def add(a: int, b: int) -> N:
    return N(a + b)


@workflow(name="plus-two")
def plus_two(n: int) -> N:
    return inc(n=inc(n=n))


@workflow
def release(x: int) -> Result:
    prep = inc(n=x)
    size = branch((prep > 10, lambda: plus_two(n=prep)), otherwise=lambda: inc(n=prep), name="size")
    nap = gate.sleep("300ms", name="nap")
    bump = gate.signal("bump", int)
    review = gate.approve(timeout="5m", name="review")
    total = add(a=size, b=bump).with_overrides(retries=1)
    size >> nap
    nap >> bump
    bump >> review
    review >> total
    return total
