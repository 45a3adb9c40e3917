"""NaN bits: every engine gives the same NaN, sign and payload included.

When both operands of a float ``+`` or ``*`` are NaN, the hardware returns one
of them, and which one depends on the register the compiler put each operand
in (GCC swaps the operands of a commutative operation freely; CPython's own
``a + b`` changes its answer once the interpreter specialises it).  agrad
fixes the answer with one rule, in every engine and at every ``+`` and ``*``,
forward and backward: two NaNs give the left operand's NaN, quieted (bit 51
set); one NaN or none, the hardware's result.

Hypothesis draws small graphs over leaves that include NaNs of both signs,
with payloads, signalling ones, infinities, signed zeros and ints, and runs
each on eager native agrad (with ``agrad.sum`` and ``agrad.dot``), on
``agrad.pure`` (with the builtin chain) and through ``agrad.compile`` (called
several times, so that the decoded forward replay and the kept backward
schedule both run): data and gradients must be the same bits
(``engines.exact``), or the same exception.
"""

import builtins
import math
import struct

import pytest
from engines import exact, outcome
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import agrad
import agrad.pure
from agrad import _core


def from_bits(bits):
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def bits_of(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


SIGN = 1 << 63
QUIET = 1 << 51
PLUS_NAN = from_bits(0x7FF8000000000000)
MINUS_NAN = from_bits(SIGN | 0x7FF8000000000000)


def nan_with(sign, quiet, payload):
    """A NaN with the given sign, quiet bit and payload (a signalling NaN
    needs a payload: with none its bits are an infinity's)."""
    if not quiet and payload == 0:
        payload = 1
    return from_bits((SIGN if sign else 0) | 0x7FF0000000000000 | (QUIET if quiet else 0) | payload)


nans = st.builds(nan_with, st.booleans(), st.booleans(), st.integers(0, QUIET - 1))
numbers = st.one_of(
    nans,
    st.sampled_from(
        [PLUS_NAN, MINUS_NAN, math.inf, -math.inf, 0.0, -0.0, 1.0, -1.0, 0.5, 2, -3, 0]
    ),
    st.floats(-10, 10),
    st.integers(-5, 5),
)
exponents = st.one_of(st.sampled_from([2, 3, -1, 0.5, 2.0, -2.0]), nans)

register = st.integers(0, 63)  # taken modulo the number of results so far
a_result = st.tuples(st.just("reg"), register)
operand = st.one_of(a_result, st.tuples(st.just("const"), numbers))
# A pair of a product has a Value on one side at least: a product (and a sum)
# of plain numbers is Python's own float arithmetic, outside any engine.
pair = st.one_of(st.tuples(a_result, operand), st.tuples(operand, a_result))

steps = st.one_of(
    st.tuples(st.just("binary"), st.sampled_from("+-*/"), register, register),
    st.tuples(st.just("right"), st.sampled_from("+-*/"), register, numbers),
    st.tuples(st.just("left"), st.sampled_from("+-*/"), numbers, register),
    st.tuples(st.just("pow"), register, exponents),
    st.tuples(st.just("neg"), register),
    st.tuples(
        st.just("unary"), st.sampled_from(["exp", "log", "tanh", "relu", "sigmoid"]), register
    ),
    # a sum starts with a Value: the builtin sum adds plain numbers on its own
    st.tuples(
        st.just("sum"),
        st.tuples(a_result, st.lists(operand, max_size=4)).map(lambda t: [t[0], *t[1]]),
        st.one_of(st.just(0), numbers),
    ),
    st.tuples(st.just("dot"), st.lists(pair, min_size=1, max_size=4)),
    # micrograd's neuron: s = s + w * x, link after link
    st.tuples(st.just("chain"), register, st.lists(pair, min_size=1, max_size=4)),
)
leaf_values = st.lists(numbers, min_size=1, max_size=4)
programs = st.tuples(st.lists(steps, min_size=1, max_size=8), register)


def build(program, params, fused):
    """The program's results, each step on the results before it; fused: sums
    and dots through agrad.sum and agrad.dot (native), else the builtin chain."""
    steps, _ = program
    regs = list(params)

    def r(i):
        return regs[i % len(regs)]

    def resolve(item):
        kind, x = item
        return r(x) if kind == "reg" else x

    ops = {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
        "/": lambda a, b: a / b,
    }
    for step in steps:
        kind = step[0]
        if kind == "binary":
            out = ops[step[1]](r(step[2]), r(step[3]))
        elif kind == "right":
            out = ops[step[1]](r(step[2]), step[3])
        elif kind == "left":
            out = ops[step[1]](step[2], r(step[3]))
        elif kind == "pow":
            out = r(step[1]) ** step[2]
        elif kind == "neg":
            out = -r(step[1])
        elif kind == "unary":
            out = getattr(r(step[2]), step[1])()
        elif kind == "sum":
            terms = [resolve(item) for item in step[1]]
            out = agrad.sum(terms, step[2]) if fused else builtins.sum(terms, step[2])
        elif kind == "dot":
            weights = [resolve(w) for w, _ in step[1]]
            inputs = [resolve(x) for _, x in step[1]]
            if fused:
                out = agrad.dot(weights, inputs)
            else:
                out = builtins.sum(w * x for w, x in zip(weights, inputs, strict=True))
        else:  # chain
            out = r(step[1])
            for w, x in step[2]:
                out = out + resolve(w) * resolve(x)
        regs.append(out)
    return regs[len(params) :]


def observe(results, params, root):
    """What a call gave: every result's data, then backward() from one of
    them and every gradient (the parameters', then the results')."""
    trace = [exact(v.data) for v in results]
    done = outcome(results[root % len(results)].backward)
    return [
        "ok",
        trace,
        done,
        [exact(p.grad) for p in params],
        [exact(v.grad) for v in results],
    ]


def eager(program, values, V, fused):
    params = [V(x) for x in values]
    made = outcome(lambda: build(program, params, fused))
    if made[0] != "ok":
        return list(made)
    return observe(made[1], params, program[1])


# The parameters are Values in the compiled function's closure, read by every
# replay, as a model's are: their data is set anew before each call.
def compiled_calls(program, calls):
    params = [agrad.Value(x) for x in calls[0]]
    f = agrad.compile(lambda: build(program, params, fused=True))
    observed = []
    for values in calls:
        for p, x in zip(params, values, strict=True):
            p.data = x
        made = outcome(f)
        observed.append(list(made) if made[0] != "ok" else observe(made[1], params, program[1]))
    return observed


def check(program, calls):
    expected = []
    for values in calls:
        pure = eager(program, values, agrad.pure.Value, fused=False)
        assert eager(program, values, agrad.Value, fused=False) == pure, "native chain"
        assert eager(program, values, agrad.Value, fused=True) == pure, "agrad.sum/dot"
        expected.append(pure)
    assert compiled_calls(program, calls) == expected, "agrad.compile"


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def cases(draw):
    """A program and the parameters' values for three calls: the first records,
    the second replays new numbers, the third the same again."""
    program = draw(programs)
    first = draw(leaf_values)
    second = draw(st.lists(numbers, min_size=len(first), max_size=len(first)))
    return program, [first, second, second]


def case(program, values):
    """An example: a program and one call's values, called three times."""
    return program, [values] * 3


@SETTINGS
@given(cases())
# +nan + -nan: native eager gave +nan, agrad.pure -nan
@example(case(([("binary", "+", 0, 1)], 2), [PLUS_NAN, MINUS_NAN]))
# the replayed product, sum and dot gave the other sign from eager
@example(case(([("binary", "*", 0, 1)], 2), [MINUS_NAN, PLUS_NAN]))
@example(case(([("sum", [("reg", 0), ("reg", 1)], 0)], 2), [PLUS_NAN, MINUS_NAN]))
@example(
    case(
        ([("dot", [(("reg", 0), ("reg", 1)), (("reg", 1), ("reg", 0))])], 2),
        [PLUS_NAN, MINUS_NAN],
    )
)
# micrograd's neuron: the replayed chain, forward and backward
@example(
    case(
        ([("chain", 2, [(("reg", 0), ("reg", 1)), (("reg", 1), ("reg", 2))])], 3),
        [MINUS_NAN, 2.0, PLUS_NAN],
    )
)
# a NaN start: start + v is v.__radd__(start), v + start; a constant weight:
# c * x is x.__rmul__(c), x * c
@example(case(([("sum", [("reg", 0)], MINUS_NAN)], 1), [PLUS_NAN]))
@example(case(([("dot", [(("const", MINUS_NAN), ("reg", 0))])], 1), [PLUS_NAN]))
# signalling NaNs come out quieted, payload kept
@example(case(([("binary", "*", 0, 1)], 2), [nan_with(True, False, 5), nan_with(False, False, 7)]))
def test_every_engine_gives_the_same_nan_bits(drawn):
    check(*drawn)


# A backward pass runs on the hardware and again with the rule only if a NaN
# turned up (graph.cpp, Graph::backward).  Here the forward values are
# finite and the NaN appears mid-backward (0.0 * inf at d's gradient); with a
# NaN parameter n, d's gradient then adds two different NaNs.  The calls go
# from no NaN (the hardware's pass kept) to NaNs (the pass made again).
MID_BACKWARD = (
    [
        ("right", "*", 0, 0.0),  # m = d * 0.0
        ("binary", "*", 1, 3),  # a * m
        ("binary", "*", 1, 4),  # a * (a * m): gradient a * a = inf at m
        ("binary", "*", 0, 2),  # d * n
        ("binary", "+", 5, 6),
    ],
    4,
)


@pytest.mark.parametrize(
    "calls",
    [
        [[0.5, 1.0, 2.0], [0.5, 1e300, 2.0], [0.5, 1e300, 2.0]],
        [[0.5, 1.0, 2.0], [0.5, 1e300, nan_with(True, False, 5)], [0.5, 1e300, MINUS_NAN]],
        [[0.5, 1e300, nan_with(False, True, 9)], [0.5, 2.0, 3.0], [0.5, 1e300, PLUS_NAN]],
    ],
)
def test_a_nan_that_appears_mid_backward(calls):
    check(MID_BACKWARD, calls)
    d, a, n = (agrad.Value(x) for x in calls[-1])
    out = build(MID_BACKWARD, [d, a, n], fused=False)[4]
    out.backward()
    assert math.isnan(d.grad)  # (the case is the one meant)


def test_two_nans_give_the_left_operands_nan_quieted():
    """The rule itself, on each engine: left NaN, quiet bit set, sign and
    payload kept; one NaN is the hardware's, whichever side it is on."""
    s1, s2 = nan_with(True, False, 5), nan_with(False, True, 9)
    for V in (agrad.Value, agrad.pure.Value):
        for a, b in ((s1, s2), (s2, s1), (PLUS_NAN, MINUS_NAN), (MINUS_NAN, PLUS_NAN)):
            for out in ((V(a) + V(b)).data, (V(a) * V(b)).data):
                assert bits_of(out) == bits_of(a) | QUIET, (V, a, b)
        for a, b in ((s1, 2.0), (2.0, s1)):
            assert bits_of((V(a) + V(b)).data) == bits_of(s1) | QUIET
    assert bits_of(agrad.pure._fadd(MINUS_NAN, PLUS_NAN)) == bits_of(MINUS_NAN)
    assert bits_of(agrad.pure._fmul(PLUS_NAN, MINUS_NAN)) == bits_of(PLUS_NAN)
    # inf - inf: the hardware's default NaN, whichever the order
    assert bits_of(agrad.pure._fadd(math.inf, -math.inf)) == bits_of(
        agrad.pure._fadd(-math.inf, math.inf)
    )


@pytest.mark.parametrize("op", ["+", "*"])
def test_the_pure_rule_survives_cpythons_specialisation(op):
    """CPython's `a + b` on two NaNs gives one sign before BINARY_OP is
    specialised and the other after: the pure engine's must not change."""
    f = agrad.pure._fadd if op == "+" else agrad.pure._fmul
    seen = {bits_of(f(PLUS_NAN, MINUS_NAN)) for _ in range(100)}
    seen |= {
        bits_of((agrad.pure.Value(PLUS_NAN) + agrad.pure.Value(MINUS_NAN)).data) for _ in range(100)
    }
    assert seen == {bits_of(PLUS_NAN)}


def test_a_materialized_constant_keeps_the_order_python_used():
    """_prev turns a fused node's constants into leaves: recomputing it (a
    replay) must still add and multiply in the order Python did."""
    x = agrad.Value(PLUS_NAN)
    f = agrad.compile(lambda: [agrad.dot([MINUS_NAN, 1.0], [x, x]), agrad.sum([x, 1.0], MINUS_NAN)])
    outs = f()
    for out in outs:
        out._prev  # materializes the constants
    for _ in range(2):
        for out in f():
            assert bits_of(out.data) == bits_of(PLUS_NAN)
    assert _core._live_nodes() > 0
