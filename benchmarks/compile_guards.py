"""What agrad.compile's soundness costs: the key, the guards, re-recording.

A compiled call today does, around the replay itself, what makes it sound:
the arguments' key with the plain numbers the function reads from its
closure and globals, the choice among the programs kept for that key (one
per pattern of guard outcomes), and the check of every guard after the
forward pass.  This script times a training step written as a user writes
it (the compiled call, backward, the optimizer), against the same step
through agrad.compile's call path as it was before guards (the arguments
flattened, the one program for their key run), in one process, interleaved,
minimum of repetitions.  Then, on a function with a branch per sample, what
a replay costs when its guards hold, when they flip between two kept
programs, and when every call must record anew, against one eager call.

    python benchmarks/compile_guards.py               # build/benchmarks/GUARDS.md
    python benchmarks/compile_guards.py --output DIR  # DIR/GUARDS.md
    python benchmarks/compile_guards.py --update      # the tracked benchmarks/GUARDS.md

It exits 3 when the overhead is over its goal (3% of a step), as run.py does.
"""

from __future__ import annotations

import random
import sys
from collections import OrderedDict

import numpy as np
import output
from measure import per_call_minima

import agrad
from agrad import _core, nn, optim
from agrad.datasets import batch_data
from agrad.linreg import LinReg


class BeforeGuards:
    """The call path agrad.compile had before guards, kept here as the baseline:
    the arguments' key and numbers in one pass, the one program for that key,
    its replay, the result."""

    def __init__(self, compiled: agrad.compile, args: tuple):
        key = _core._flatten(args, {}, np.ndarray)[0]
        self.programs = OrderedDict([(key, (compiled.program(*args), compiled(*args)))])

    def __call__(self, *args):
        key, numbers_in = _core._flatten(args, {}, np.ndarray)
        program, result = self.programs.get(key)
        self.programs.move_to_end(key)
        program.run(numbers_in)
        return list(result) if type(result) is list else result


def step_pair(loss_fn, params, args, lr):
    """(the step through agrad.compile, the same step on the call path before guards)."""
    compiled = agrad.compile(loss_fn)
    opt = optim.SGD(params, lr=lr)
    compiled(*args)  # the recording
    before = BeforeGuards(compiled, args)

    def guarded():
        loss = compiled(*args)
        loss.backward()
        opt.step()

    def unguarded():
        loss = before(*args)
        loss.backward()
        opt.step()

    return guarded, unguarded


def workloads():
    rng = random.Random(42)
    xs, ys = batch_data(1000, rng)
    chapter = LinReg()
    yield (
        "chapter, 1000 points, full batch",
        *step_pair(chapter.loss, chapter.parameters(), (xs, ys), 1e-6),
    )

    bx, by = batch_data(50, rng)
    mini = LinReg()
    yield "chapter, batch of 50", *step_pair(mini.loss, mini.parameters(), (bx, by), 1e-6)

    points = [[rng.uniform(-2, 2), rng.uniform(-2, 2)] for _ in range(100)]
    labels = [1 if x * y > 0 else -1 for x, y in points]
    model = nn.MLP(2, [16, 16, 1], rng=random.Random(1)) if _takes_rng() else nn.MLP(2, [16, 16, 1])

    def demo_loss(points, labels):
        scores = [model(p) for p in points]
        return nn.hinge_loss(scores, labels, model.parameters())

    yield (
        "micrograd's demo, agrad.nn (2-16-16-1, 100 points)",
        *step_pair(demo_loss, model.parameters(), (points, labels), 1e-3),
    )


def _takes_rng() -> bool:
    import inspect

    return "rng" in inspect.signature(nn.MLP.__init__).parameters


def branching_costs(rounds: int) -> dict[str, float]:
    """A per-sample branch (a hand-written ReLU) over 100 inputs."""
    w = agrad.Value(0.5)

    def fn(xs):
        return agrad.sum([x * w if x > 0 else x * 0.01 for x in xs])

    rng = random.Random(3)
    a = [rng.uniform(-1, 1) for _ in range(100)]
    b = [-x for x in a]  # every branch the other way
    steady = agrad.compile(fn)
    steady(a)
    two = agrad.compile(fn)
    two(a)
    two(b)
    flip = [a, b]
    count = [0]

    def alternate():
        count[0] += 1
        two(flip[count[0] % 2])

    record_each = agrad.compile(fn, max_programs=1)

    def record():
        count[0] += 1
        record_each(flip[count[0] % 2])

    values = [agrad.Value(x) for x in a]
    return per_call_minima(
        {
            "eager call": lambda: fn(values),
            "replay, guards hold": lambda: steady(a),
            "replay, guards flip between two kept programs": alternate,
            "a call that records anew (max_programs=1)": record,
        },
        rounds,
        20,
    )


def main(argv: list[str] | None = None) -> int:
    args = output.rounds_arguments(
        "compile_guards.py",
        "Time what agrad.compile's soundness costs (key, guards, re-recording) "
        "against the bare replay, in one process, minimum of interleaved repetitions.",
        ["GUARDS.md"],
        30,
        argv,
    )

    lines = [
        "# What agrad.compile's soundness costs",
        "",
        output.conditions("compile_guards.py", args.rounds),
        "",
        "A training step as a user writes it (compiled call, `backward()`, `SGD.step()`), "
        "through `agrad.compile` with its key, program choice and guard check, against the "
        "same step through the call path it had before guards (arguments flattened, the one "
        "program for their key run):",
        "",
        "| workload | step, agrad.compile | step, call path before guards | soundness overhead |",
        "| --- | --- | --- | --- |",
    ]
    worst = 0.0
    for name, guarded, bare in workloads():
        t = per_call_minima({"guarded": guarded, "bare": bare}, args.rounds, 10)
        overhead = t["guarded"] / t["bare"] - 1
        worst = max(worst, overhead)
        lines.append(
            f"| {name} | {t['guarded'] * 1e6:.1f} us | {t['bare'] * 1e6:.1f} us | "
            f"{overhead * 100:+.1f}% |"
        )
    costs = branching_costs(args.rounds)
    eager = costs["eager call"]
    lines += [
        "",
        "A function with a branch per sample (`x * w if x > 0 else x * 0.01` over 100 inputs), "
        "forward only:",
        "",
        "| call | time | / eager call |",
        "| --- | --- | --- |",
    ]
    for name, seconds in costs.items():
        lines.append(f"| {name} | {seconds * 1e6:.1f} us | {seconds / eager:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    (output.folder(args) / "GUARDS.md").write_text(text)
    target = 0.03
    if worst > target:
        print(
            f"goal missed: soundness overhead {worst * 100:.1f}% > {target * 100:.0f}%",
            file=sys.stderr,
        )
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
