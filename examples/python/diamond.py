"""The diamond of examples/diamond.yaml, in Python: a -> (b, c) -> d.

aloft run examples/python/diamond.py:diamond --input x=3    # result = (x+1)*2 + (x+1)^2 = 24
"""

from typing import NamedTuple

from aloft import task, workflow


class N(NamedTuple):
    n: int


class Sum(NamedTuple):
    sum: int


class Result(NamedTuple):
    result: int


@task
def increment(n: int) -> N:
    return N(n + 1)


@task
def double(n: int) -> N:
    return N(n * 2)


@task
def square(n: int) -> N:
    return N(n * n)


@task
def add(a: int, b: int) -> Sum:
    return Sum(a + b)


@workflow
def diamond(x: int) -> Result:
    a = increment(n=x)
    b = double(n=a)
    c = square(n=a)
    return add(a=b, b=c)
