"""What second derivatives cost: a Hessian-vector product against one gradient,
and the body-fat Hessian, eager and through agrad.compile.

The goals: a Hessian-vector product at most 4x a gradient (eager and
compiled), the body-fat Hessian (15 x 15) compiled in under 1 ms a call.
Each case is timed in one process, the cases interleaved, minimum of the
repetitions (the machine is shared).  A "gradient" is what a user pays for
one: the loss built (or replayed) and ``backward()``; an HVP is the loss
built (or replayed) and ``agrad.hvp`` (or, compiled, a function returning
``agrad.dot(agrad.grad(loss, params, create_graph=True), v)`` and its
``backward()``).

    python benchmarks/higher.py              # print the table
    python benchmarks/higher.py --output DIR # also write DIR/HIGHER.md
    python benchmarks/higher.py --update     # also rewrite benchmarks/HIGHER.md
"""

from __future__ import annotations

import random
import sys

import numpy as np
import output
from measure import per_call_minima

import agrad
from agrad import nn
from agrad.datasets import load_body_fat, moons_data, to_xy
from agrad.linreg import LinReg, standardize


def body_fat():
    """The chapter's body-fat model and its full-batch MSE: 15 parameters."""
    X, ys, names = to_xy(load_body_fat())
    X_norm, _, _ = standardize(X)
    random.seed(0)
    model = LinReg(n_inputs=len(names))
    return "body fat MSE (15 parameters, 252 rows)", model.parameters(), model.loss, X_norm, ys


def tanh_mlp():
    """A small tanh network on the moons: second derivatives that are not constant."""
    random.seed(0)
    X, y = moons_data(50, noise=0.1, rng=np.random.RandomState(0))
    model = nn.MLP(2, [8, 1], activation="tanh")

    def loss(xs, ys):
        return nn.mse([model(x) for x in xs], ys)

    return (
        "tanh MLP 2-8-1 MSE (33 parameters, 50 points)",
        model.parameters(),
        loss,
        X.tolist(),
        y.tolist(),
    )


def hvp_cases(params, loss, xs, ys):
    v = np.random.default_rng(0).normal(size=len(params)).tolist()
    compiled_loss = agrad.compile(loss)
    compiled_directional = agrad.compile(
        lambda xs, ys, v: agrad.dot(agrad.grad(loss(xs, ys), params, create_graph=True), v)
    )

    def eager_gradient():
        loss(xs, ys).backward()

    def eager_hvp():
        agrad.hvp(loss(xs, ys), params, v)

    def compiled_gradient():
        compiled_loss(xs, ys).backward()

    def compiled_hvp():
        compiled_directional(xs, ys, v).backward()

    # the compiled HVP is the eager one, bit for bit
    compiled_hvp()
    assert [p.grad for p in params] == agrad.hvp(loss(xs, ys), params, v)
    return {
        "eager gradient": eager_gradient,
        "eager HVP": eager_hvp,
        "compiled gradient": compiled_gradient,
        "compiled HVP": compiled_hvp,
    }


def hessian_cases(params, loss, xs, ys):
    as_arguments = agrad.compile(
        lambda xs, ys: list(agrad.hessian(loss(xs, ys), params, create_graph=True).flat)
    )
    captured = agrad.compile(
        lambda: list(agrad.hessian(loss(xs, ys), params, create_graph=True).flat)
    )
    n = len(params)

    def read(values):
        return np.array([h.data for h in values]).reshape(n, n)

    expected = agrad.hessian(loss(xs, ys), params)
    assert np.array_equal(read(as_arguments(xs, ys)), expected)
    assert np.array_equal(read(captured()), expected)
    return {
        "eager agrad.hessian": lambda: agrad.hessian(loss(xs, ys), params),
        "compiled, data as arguments": lambda: read(as_arguments(xs, ys)),
        "compiled, data captured": lambda: read(captured()),
    }, as_arguments.program(xs, ys).operations


#: How many Hessians in a row the loop column times.
LOOP = 10


def main(argv: list[str] | None = None) -> int:
    args = output.rounds_arguments(
        "higher.py",
        "Time a Hessian-vector product against a gradient, and the body-fat "
        "Hessian, eager and compiled, minimum of interleaved repetitions.",
        ["HIGHER.md"],
        15,
        argv,
    )

    lines = [
        "# What second derivatives cost",
        "",
        output.conditions("higher.py", args.rounds),
        "",
        "A Hessian-vector product against one gradient (each with its forward pass; "
        "target: at most 4x):",
        "",
        "| workload | gradient | HVP | HVP / gradient |",
        "| --- | --- | --- | --- |",
    ]
    ratios = []
    for make in (body_fat, tanh_mlp):
        name, params, loss, xs, ys = make()
        cases = hvp_cases(params, loss, xs, ys)
        t = per_call_minima(cases, args.rounds, 1)
        for mode in ("eager", "compiled"):
            ratio = t[f"{mode} HVP"] / t[f"{mode} gradient"]
            ratios.append(ratio)
            lines.append(
                f"| {name}, {mode} | {t[f'{mode} gradient'] * 1e3:.3f} ms | "
                f"{t[f'{mode} HVP'] * 1e3:.3f} ms | {ratio:.1f}x |"
            )
    name, params, loss, xs, ys = body_fat()
    cases, operations = hessian_cases(params, loss, xs, ys)
    # once a round, right after the other cases (caches cold), and as Newton's
    # iterations or a bootstrap call it: LOOP calls in a row, their mean
    once = per_call_minima(cases, args.rounds, 1)
    looped = per_call_minima(cases, args.rounds, LOOP)
    lines += [
        "",
        f"The body-fat Hessian (15 x 15; the compiled program replays {operations} "
        "operations, and the 225 entries are read into an array; target: under 1 ms, "
        f"judged on {LOOP} calls in a row):",
        "",
        f"| how | one call after the others | {LOOP} calls in a row, per call |",
        "| --- | --- | --- |",
    ]
    for how in cases:
        lines.append(f"| {how} | {once[how] * 1e3:.3f} ms | {looped[how] * 1e3:.3f} ms |")
    compiled_hessian = min(looped["compiled, data as arguments"], looped["compiled, data captured"])
    text = "\n".join(lines) + "\n"
    print(text)
    (output.folder(args) / "HIGHER.md").write_text(text)
    missed = []
    if max(ratios) > 4:
        missed.append(f"HVP / gradient {max(ratios):.1f}x > 4x")
    if compiled_hessian > 1e-3:
        missed.append(f"compiled Hessian {compiled_hessian * 1e3:.2f} ms > 1 ms")
    if missed:
        print("goal missed: " + "; ".join(missed), file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
