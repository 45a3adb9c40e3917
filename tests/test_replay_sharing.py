"""A compiled replay computes an operation repeated on the same operands once
(the forward pass copies its value, the backward pass reuses pow's local
derivative): data, every gradient and every error stay eager's, bit for bit.

The programs repeat each operation a few times on one node or one pair, with
constants that are equal as numbers but not as bits (2 and 2.0, 0.0 and
-0.0, NaNs of other signs and payloads), so that a replay sharing too much
gives other bits; and the numbers of the second call may make the shared
operation overflow or leave its domain, where the replay must fail as eager
does, at the same node."""

import math
import struct

from engines import exact
from hypothesis import given, settings
from hypothesis import strategies as st

import agrad
from agrad import Value


def nan(bits):
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


NANS = [math.nan, nan(0xFFF8000000000000), nan(0x7FF8000000000123), nan(0xFFF4000000000001)]
EXPONENTS = [-1, -1.0, 2, 2.0, 0.5, 3, -2, 0, 0.0, -0.0, 1.5, 2**53 + 1, float(2**53), *NANS]
CONSTANTS = [0, 0.0, -0.0, 1, 1.0, -1, 2.5, 1e308, -math.inf, *NANS]

# Each operation takes the pair (a, b) and a constant: the programs apply one
# several times to the same pair, so the replay finds the repeats.
OPERATIONS = [
    lambda a, b, k: a**k,
    lambda a, b, k: a.exp(),
    lambda a, b, k: a.log(),
    lambda a, b, k: a.tanh(),
    lambda a, b, k: a.sigmoid(),
    lambda a, b, k: a.relu(),
    lambda a, b, k: a * b,
    lambda a, b, k: b * a,
    lambda a, b, k: a + b,
    lambda a, b, k: a * a,
    lambda a, b, k: a / b,
    lambda a, b, k: a - b,
    lambda a, b, k: a * k,
    lambda a, b, k: k * a,
    lambda a, b, k: a + k,
    lambda a, b, k: -a,
    lambda a, b, k: agrad.sum([a / b, b / b, a * b**-1]),  # a softmax's divisions
]

steps = st.lists(
    st.tuples(
        st.integers(0, len(OPERATIONS) - 1),
        st.integers(0, 200),  # a
        st.integers(0, 200),  # b
        st.lists(st.integers(0, 200), min_size=1, max_size=4),  # each repeat's constant
    ),
    min_size=1,
    max_size=10,
)
benign = st.floats(0.25, 2.0)
numbers = st.one_of(
    st.floats(-3, 3),
    st.floats(allow_nan=False),
    st.sampled_from([0, 0.0, -0.0, 1, -1, 2, 710.0, 1e200, -1e-320, math.inf, -math.inf, *NANS]),
    st.integers(-3, 3),
)


def build(program, params, kinds):
    pool = list(params)
    for op, i, j, ks in program:
        a, b = pool[i % len(pool)], pool[j % len(pool)]
        constants = EXPONENTS if op == 0 else CONSTANTS
        for k in ks:
            pool.append(OPERATIONS[op](a, b, constants[k % len(constants)]))
    made = pool[len(params) :]
    # a root through every node made, each weighted apart, so a wrong bit anywhere shows
    return agrad.dot(made, [kinds[m % len(kinds)] for m in range(len(made))])


def outcome(thunk):
    try:
        return ("ok", thunk())
    except (ArithmeticError, ValueError) as error:
        return ("raised", type(error))


@settings(max_examples=300, deadline=None)
@given(
    steps,
    st.lists(benign, min_size=3, max_size=3),
    st.lists(numbers, min_size=3, max_size=3),
    st.lists(st.sampled_from([1.0, -0.5, 3, 0.25]), min_size=1, max_size=3),
)
def test_repeated_operations_replay_as_eager(program, first, second, weights):
    params = [Value(x) for x in first]
    f = agrad.compile(lambda: build(program, params, weights))
    recorded = outcome(f)
    eager = outcome(lambda: build(program, params, weights))
    assert recorded[0] == eager[0]
    if recorded[0] == "raised":
        assert recorded == eager
        return
    for p, x in zip(params, second, strict=True):
        p.data = x
    replayed = outcome(f)
    eager = outcome(lambda: build(program, params, weights))
    if eager[0] == "raised":
        assert replayed == eager
        return
    assert replayed[0] == "ok"
    assert exact(replayed[1].data) == exact(eager[1].data)
    if all(isinstance(x, float) for x in second):
        assert f.recordings == 1  # replayed, not recorded again
    got = outcome(replayed[1].backward)
    got_grads = [exact(p.grad) for p in params]
    want = outcome(eager[1].backward)
    assert got == want
    assert got_grads == [exact(p.grad) for p in params]
    # the replayed root's kept schedule again, now that eager's pass has run
    got = outcome(replayed[1].backward)
    assert got == want
    assert got_grads == [exact(p.grad) for p in params]


def test_a_softmax_replays_its_divisions_as_eager():
    """Four e / s, each e * s ** -1 of one sum s: the case the sharing is for,
    on numbers where s ** -1 and its derivative overflow or divide by zero."""
    xs = [Value(x) for x in (0.5, -1.0, 2.0, 0.25)]

    def softmax():
        exps = [x.exp() for x in xs]
        total = agrad.sum(exps)
        outs = [e / total for e in exps]
        return agrad.dot(outs, [1.0, 2.0, 3.0, 4.0])

    f = agrad.compile(softmax)
    f()
    for data in ([0.5, -1.0, 2.0, 0.25], [-800.0] * 4, [-745.0, -746.0, -800.0, -900.0], [1.0] * 4):
        for x, d in zip(xs, data, strict=True):
            x.data = d
        got = outcome(f)
        want = outcome(softmax)
        assert got[0] == want[0]
        if got[0] == "raised":
            assert got == want
            continue
        assert exact(got[1].data) == exact(want[1].data)
        results = []
        for root in (got[1], want[1]):
            done = outcome(root.backward)
            results.append((done, [exact(x.grad) for x in xs]))
        assert results[0] == results[1]
