"""Random expression graphs: the native and pure engines must agree, bit for bit.

Hypothesis draws a small program: leaves, then steps that each apply one op
(``+ - * / **``, unary ``-``, ``exp log tanh relu sigmoid``, a sum, a dot) to
earlier results and constants on either side, so results are shared by later
steps.  Numbers come from the awkward corners (0.0, -0.0, nan, inf, the
largest and smallest floats, 64-bit int limits, numpy scalars).  The program
runs on both engines; every step must give the same data (type and bits) or
raise the same exception (type and message), then ``backward()`` from one or
two roots must give the same gradients or the same exception.  On the
native engine, a step that raises must leave no node behind, and once the
program's Values are dropped every node must be freed at once (the garbage
collector is off while a program runs).  ``agrad.sum`` and ``agrad.dot`` on the
native engine are compared with the builtin chain on the pure one.

The number of examples is set by a profile, chosen with the environment
variable ``AGRAD_FUZZ_PROFILE``: ``ci`` (the default, about a minute on a
2-core machine) or ``long`` (a thorough run; see docs/reliability.md).
"""

import builtins
import gc
import math
import os
import struct

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import agrad
import agrad.pure
from agrad import _core

settings.register_profile(
    "ci",
    max_examples=2500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=50_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = settings.get_profile(os.environ.get("AGRAD_FUZZ_PROFILE", "ci"))

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SPECIAL_FLOATS = [
    0.0, -0.0, 1.0, -1.0, 0.5, 2.0, math.nan, -math.nan, math.inf, -math.inf,
    1e308, -1e308, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-300, 709.78, 710.0,
    -745.2, 2.0**53, 1e16, 3.5,
]  # fmt: skip
SPECIAL_INTS = [
    0, 1, -1, 2, -2, 3, 63, 64, 2**31, 2**53 + 1, 3037000499, 3037000500, 2**62,
    INT64_MAX, INT64_MIN, INT64_MIN + 1,
]  # fmt: skip

plain_numbers = st.one_of(
    st.sampled_from(SPECIAL_FLOATS),
    st.sampled_from(SPECIAL_INTS),
    st.floats(),
    st.floats(-10, 10),
    st.integers(-10, 10),
    st.integers(INT64_MIN, INT64_MAX),
    st.booleans(),
)
# What a user may mix in as a constant: numpy's scalars too.
constants = st.one_of(
    plain_numbers,
    st.floats().map(np.float64),
    st.integers(INT64_MIN, INT64_MAX).map(np.int64),
)
exponents = st.one_of(
    st.sampled_from([0, 1, 2, 3, -1, -2, 0.5, -0.5, 2.0, -0.0, 1.5, 63, 64]),
    constants,
)
register = st.integers(0, 63)  # taken modulo the number of results so far


a_result = st.tuples(st.just("reg"), register)


def sum_terms(numbers):
    """A sum's terms: results and constants drawn from numbers.

    The builtin chain does plain arithmetic on constants until it meets a
    Value (unbounded Python ints, wrapping numpy ints) where agrad.sum and
    agrad.dot check 64-bit ranges: so a sum starts with a result, and each
    product of a dot has one, and both sides do Value arithmetic throughout.
    """
    operand = st.one_of(a_result, st.tuples(st.just("const"), numbers))
    return st.tuples(a_result, st.lists(operand, max_size=5)).map(lambda t: [t[0], *t[1]])


def dot_pairs(numbers):
    operand = st.one_of(a_result, st.tuples(st.just("const"), numbers))
    pair = st.one_of(st.tuples(a_result, operand), st.tuples(operand, a_result))
    return st.lists(pair, min_size=1, max_size=4)


steps = st.one_of(
    st.tuples(st.just("binary"), st.sampled_from("+-*/"), register, register),
    st.tuples(st.just("right"), st.sampled_from("+-*/"), register, constants),
    st.tuples(st.just("left"), st.sampled_from("+-*/"), constants, register),
    st.tuples(st.just("pow"), register, exponents),
    st.tuples(st.just("neg"), register),
    st.tuples(
        st.just("unary"), st.sampled_from(["exp", "log", "tanh", "relu", "sigmoid"]), register
    ),
    st.tuples(st.just("sum"), sum_terms(constants), st.one_of(st.just(0), constants)),
    st.tuples(st.just("dot"), dot_pairs(constants)),
)
programs = st.tuples(
    st.lists(plain_numbers, min_size=1, max_size=4),  # leaves
    st.lists(steps, min_size=1, max_size=14),
    st.lists(register, min_size=1, max_size=2),  # roots of backward()
)

BINARY = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
}


def key(x):
    """The exact identity of a number: its type and bits.

    A nan is a nan: when both operands of an addition are nans of opposite
    signs, which one comes out depends on how the C compiler ordered the
    operands (CPython's float add gives its second), so the sign of a nan is
    not part of the contract.  (One nan operand keeps its sign: see
    test_reliability.py.)
    """
    if type(x) is int:
        return ("int", x)
    if type(x) is float:
        if math.isnan(x):
            return ("nan",)
        return ("float", struct.pack("<d", x))
    return ("not a number", type(x).__name__, repr(x))


def outcome(thunk):
    """What calling thunk gave: ("ok", result) or ("raised", type, message)."""
    try:
        return ("ok", thunk())
    except (ArithmeticError, ValueError, TypeError) as error:
        return ("raised", type(error).__name__, str(error))


def apply(step, regs, fused):
    def r(i):
        return regs[i % len(regs)]

    def resolve(item):
        kind, x = item
        return r(x) if kind == "reg" else x

    kind = step[0]
    if kind == "binary":
        return BINARY[step[1]](r(step[2]), r(step[3]))
    if kind == "right":
        return BINARY[step[1]](r(step[2]), step[3])
    if kind == "left":
        return BINARY[step[1]](step[2], r(step[3]))
    if kind == "pow":
        return r(step[1]) ** step[2]
    if kind == "neg":
        return -r(step[1])
    if kind == "unary":
        return getattr(r(step[2]), step[1])()
    if kind == "sum":
        terms = [resolve(item) for item in step[1]]
        return agrad.sum(terms, step[2]) if fused else builtins.sum(terms, step[2])
    if kind == "dot":
        weights = [resolve(w) for w, _ in step[1]]
        inputs = [resolve(x) for _, x in step[1]]
        if fused:
            return agrad.dot(weights, inputs)
        return builtins.sum(w * x for w, x in zip(weights, inputs, strict=True))
    raise AssertionError(f"unknown step {kind}")


def run(program, V, fused=False):
    """Runs the program; returns its trace (comparable between engines) and
    the Values it made, so the caller can drop them.  fused: sums and dots
    through agrad.sum and agrad.dot (native only), else the builtin chain."""
    native = V is agrad.Value
    leaves, program_steps, roots = program
    regs = [V(x) for x in leaves]
    trace = [("leaf", key(v.data)) for v in regs]
    for step in program_steps:
        before = _core._live_nodes() if native else None
        result = outcome(lambda step=step: apply(step, regs, fused))
        if result[0] == "ok":
            value = result[1]
            assert isinstance(value, V), f"{step} gave {value!r}"
            regs.append(value)
            trace.append(("ok", key(value.data), repr(value)))
        else:
            if native:  # nothing half-done: the failed op left no node
                assert _core._live_nodes() == before, step
            trace.append(result)
    for root in roots:
        done = outcome(regs[root % len(regs)].backward)
        trace.append(("backward", done[0] == "ok", done[1:]))
        trace.append(("grads", [key(v.grad) for v in regs]))
    return trace, regs


def run_both(program, fused):
    gc.disable()  # every node must go by reference counting alone
    try:
        baseline = _core._live_nodes()
        native, regs = run(program, agrad.Value, fused)
        del regs
        assert _core._live_nodes() == baseline, "nodes outlived their Values"
        pure, _ = run(program, agrad.pure.Value)
    finally:
        gc.enable()
    return native, pure


@settings(PROFILE)
@given(programs)
# a negative base to a fractional power is a ValueError, even where the
# complex power Python would compute overflows
@example(([-(2**63)], [("pow", 0, 709.78)], [0]))
def test_native_and_pure_engines_agree(program):
    native, pure = run_both(program, fused=False)
    assert native == pure


@settings(PROFILE)
@given(programs)
# a term also reached through another term, with contributions that cancel
# (9e15 - 9e15): the fused node must hand out each term's gradient where the
# chain's addition of that term would, or the sums round differently
@example(
    (
        [1.5],
        [("binary", "-", 0, 0), ("dot", [(("reg", 0), ("reg", 0)), (("const", 4.0), ("reg", 1))])],
        [2],
    )
)
@example(([2], [("unary", "exp", 0), ("sum", [("reg", 0), ("reg", 0), ("reg", 1)], 0)], [2]))
def test_fused_sum_and_dot_agree_with_the_builtin_chain(program):
    """agrad.sum and agrad.dot on the native engine give the builtin chain's
    data, gradients and exceptions (on the pure engine) bit for bit."""
    native, pure = run_both(program, fused=True)
    assert native == pure
