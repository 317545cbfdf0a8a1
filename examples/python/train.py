"""A typed train/evaluate pipeline: make a synthetic regression dataset (cached, so a rerun skips it), fit a
linear model for each learning rate in a map, evaluate every model on the held-out split in a second map, and
keep the best. Plain Python, no ML library, so it runs anywhere the SDK does.

    aloft run examples/python/train.py:train --input rows=200 --input 'lrs=[0.01, 0.1, 0.5]'
    aloft run train-nightly                      # after `aloft register -f examples/python/train.py`
"""

import dataclasses
import json
import os
import random
import tempfile

from aloft import Blob, LaunchPlan, cron, map_task, task, workflow


class Csv(Blob):
    format = "csv"


class Model(Blob):
    format = "json"


@dataclasses.dataclass
class Score:
    learning_rate: float
    mse: float


def _write(name: str, text: str) -> str:
    path = os.path.join(tempfile.mkdtemp(), name)
    with open(path, "w") as file:
        file.write(text)
    return path


def _rows(data: Csv) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in (line.split(",") for line in data.read_text().splitlines())]


@task(cache="1")
def make_data(rows: int, seed: int) -> tuple[Csv, Csv]:
    """`rows` points of y = 3x + 2 with noise, split 80/20 into a training and a test set."""
    generator = random.Random(seed)
    points = [
        (x, 3 * x + 2 + generator.gauss(0, 0.1)) for x in (generator.uniform(-1, 1) for _ in range(rows))
    ]
    cut = rows * 4 // 5
    lines = [f"{x},{y}" for x, y in points]
    return Csv(_write("train.csv", "\n".join(lines[:cut]))), Csv(_write("test.csv", "\n".join(lines[cut:])))


@task(retries=1)
def fit(train: Csv, learning_rate: float, epochs: int = 200) -> Model:
    """A line fitted by gradient descent on the mean squared error."""
    points = _rows(train)
    slope = intercept = 0.0
    for _ in range(epochs):
        grad_slope = sum(2 * (slope * x + intercept - y) * x for x, y in points) / len(points)
        grad_intercept = sum(2 * (slope * x + intercept - y) for x, y in points) / len(points)
        slope -= learning_rate * grad_slope
        intercept -= learning_rate * grad_intercept
    model = {"slope": slope, "intercept": intercept, "learning_rate": learning_rate}
    return Model(_write("model.json", json.dumps(model)))


@task
def evaluate(model: Model, test: Csv) -> Score:
    """The model's mean squared error on the test set."""
    line = json.loads(model.read_text())
    points = _rows(test)
    mse = sum((line["slope"] * x + line["intercept"] - y) ** 2 for x, y in points) / len(points)
    return Score(learning_rate=line["learning_rate"], mse=round(mse, 6))


@task
def best(scores: list[Score]) -> Score:
    return min(scores, key=lambda score: score.mse)


@workflow
def train(rows: int, lrs: list[float]) -> Score:
    train_set, test_set = make_data(rows=rows, seed=7)
    models = map_task(fit, concurrency=4)(train=train_set, learning_rate=lrs)
    scores = map_task(evaluate)(model=models, test=test_set)
    return best(scores=scores)


nightly = LaunchPlan(
    train,
    name="train-nightly",
    default_inputs={"rows": 500, "lrs": [0.01, 0.1, 0.5]},
    schedule=cron("0 2 * * *", tz="Europe/Berlin"),
)
