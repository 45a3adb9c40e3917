"""A compiled replay runs the nodes of one operation that do not depend on
each other as one loop, in both directions (``Replay::group_independent``,
``Schedule::group_independent``), and sums a gradient that a whole group adds
into (the w of a thousand ``w * x``) in a register: data, every gradient and
every error stay eager's, bit for bit.

The programs are what such loops are for: one small per-sample graph,
repeated over a batch, on shared parameters, reduced by the builtin ``sum``,
``agrad.sum``, a chain of ``+`` or ``agrad.dot``, with a few irregular nodes
that mix samples or reuse a parameter, so that some groups may and some may
not keep eager's order of additions.  Every leaf is a captured Value: the
second call replays the program on new numbers (NaNs of both signs, signed
zeros, infinities, numbers that overflow ``exp`` or leave ``log``'s domain),
and is compared with eager code on the same numbers: the loss, every leaf's
gradient, or the same exception."""

import gc
import math
import random
import struct
from collections import Counter

import pytest
from engines import exact, outcome
from hypothesis import given, settings
from hypothesis import strategies as st

import agrad
from agrad import Value, _core
from agrad.pure import topological_order


def nan(bits):
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


NANS = [math.nan, nan(0xFFF8000000000000), nan(0x7FF8000000000123)]
EXPONENTS = [2, 2.0, -1, -1.0, 0.5, 3, 1]
CONSTANTS = [1.0, -1, 0.5, -0.0, 2, 1e300, *NANS]

# Each takes two operands of the sample's pool and a constant.
OPERATIONS = [
    lambda a, b, k: a * b,
    lambda a, b, k: a + b,
    lambda a, b, k: a - b,
    lambda a, b, k: b * a,
    lambda a, b, k: a * k,
    lambda a, b, k: k + a,
    lambda a, b, k: a / b,
    lambda a, b, k: a * a,
    lambda a, b, k: -a,
    lambda a, b, k: a.exp(),
    lambda a, b, k: a.log(),
    lambda a, b, k: a.tanh(),
    lambda a, b, k: a.relu(),
    lambda a, b, k: a.sigmoid(),
    lambda a, b, k: a**k,
]
POWER = len(OPERATIONS) - 1

template = st.lists(
    st.tuples(
        st.integers(0, len(OPERATIONS) - 1),
        st.integers(0, 50),  # a, from the pool: parameters, the sample's x and y, results
        st.integers(0, 50),  # b
        st.integers(0, 50),  # the constant
    ),
    min_size=1,
    max_size=6,
)
REDUCTIONS = ["builtin sum", "agrad.sum", "chain", "dot"]
# a node mixing samples or reusing a parameter, added to the loss
IRREGULAR = [
    lambda results, params: results[0] * results[-1],
    lambda results, params: params[0] * results[len(results) // 2],
    lambda results, params: (params[1] + results[1]).tanh(),
]
benign = st.floats(0.25, 2.0)
numbers = st.one_of(
    st.floats(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 710.0, 1e200, -1e-320, math.inf, -math.inf, *NANS]),
)


def loss(program, reduction, irregular, params, xs, ys):
    results = []
    for x, y in zip(xs, ys, strict=True):
        pool = [*params, x, y]
        for op, i, j, k in program:
            constants = EXPONENTS if op == POWER else CONSTANTS
            a, b = pool[i % len(pool)], pool[j % len(pool)]
            pool.append(OPERATIONS[op](a, b, constants[k % len(constants)]))
        results.append(pool[-1])
    if reduction == "builtin sum":
        total = sum(results) / len(results)
    elif reduction == "agrad.sum":
        total = agrad.sum(results) / len(results)
    elif reduction == "chain":
        total = results[0]
        for r in results[1:]:
            total = total + r
    else:
        total = agrad.dot([params[i % len(params)] for i in range(len(results))], results)
    for i in irregular:
        total = total + IRREGULAR[i](results, params)
    return total


def book_problem(seed, n):
    """n points and the book's loss over them, on w = 0.3, b = -0.2."""
    rng = random.Random(seed)
    xs = [rng.uniform(-2, 2) for _ in range(n)]
    ys = [rng.uniform(-5, 5) for _ in range(n)]
    w, b = Value(0.3), Value(-0.2)

    def book_loss(xs, ys):
        return sum([(y - (w * x + b)) ** 2 for x, y in zip(xs, ys, strict=True)]) / len(xs)

    return xs, ys, w, b, book_loss


def node_bits(root):
    """Every node's data, as a multiset of bits: eager code reads a Python
    float as a constant and writes y + -v where a program, whose numbers are
    Values, writes y - v, so the two graphs hold the same numbers, not in the
    same order."""
    return Counter(exact(v.data) for v in topological_order(root))


def replays_as_eager(f, run, leaves, data, rounds=1):
    """Record `f` (a compiled `run`) and make its kept backward schedule;
    then give every leaf new numbers (benign ones, or NaNs, infinities,
    signed zeros, overflowing ones) and, `rounds` times, hold the replay to
    eager code: the loss and every leaf's gradient bit for bit, or the same
    exception."""
    recorded = outcome(f)
    if recorded[0] == "raised":
        return
    first = outcome(recorded[1].backward)  # makes the kept backward schedule
    assert first[0] == "ok" or first == outcome(run().backward)
    second = data.draw(
        st.one_of(
            st.lists(benign, min_size=len(leaves), max_size=len(leaves)),
            st.lists(numbers, min_size=len(leaves), max_size=len(leaves)),
        )
    )
    for leaf, x in zip(leaves, second, strict=True):
        leaf.data = x
    for _ in range(rounds):
        replayed = outcome(f)
        eager = outcome(run)
        if eager[0] == "raised":
            assert replayed == eager
            return
        assert replayed[0] == "ok"
        assert exact(replayed[1].data) == exact(eager[1].data)
        for leaf in leaves:
            leaf.grad = 0.0
        got = outcome(replayed[1].backward)
        got_grads = [exact(leaf.grad) for leaf in leaves]
        for leaf in leaves:
            leaf.grad = 0.0
        want = outcome(eager[1].backward)
        assert got == want
        if got[0] == "ok":
            assert got_grads == [exact(leaf.grad) for leaf in leaves]


@settings(max_examples=400, deadline=None)
@given(
    template,
    st.sampled_from(REDUCTIONS),
    st.lists(st.integers(0, len(IRREGULAR) - 1), max_size=2),
    st.integers(4, 24),
    st.data(),
)
def test_grouped_replay_is_eager_bit_for_bit(program, reduction, irregular, samples, data):
    leaves = [
        Value(x)
        for x in data.draw(st.lists(benign, min_size=3 + 2 * samples, max_size=3 + 2 * samples))
    ]
    params, xs, ys = leaves[:3], leaves[3 : 3 + samples], leaves[3 + samples :]

    def run():
        return loss(program, reduction, irregular, params, xs, ys)

    replays_as_eager(agrad.compile(run), run, leaves, data)


def test_the_chapters_loss_replays_in_groups_as_eager():
    """The book's loss over 1000 points, whose replay is all groups: the
    same loss and gradients as eager code, over several steps of training."""
    xs, ys, w, b, book_loss = book_problem(3, 1000)

    f = agrad.compile(book_loss)
    for _ in range(5):
        replayed = f(xs, ys)
        w.grad = b.grad = 0
        replayed.backward()
        got = exact(replayed.data), exact(w.grad), exact(b.grad)
        eager = book_loss(xs, ys)
        w.grad = b.grad = 0
        eager.backward()
        assert got == (exact(eager.data), exact(w.grad), exact(b.grad))
        w.data -= 0.05 * w.grad
        b.data -= 0.05 * b.grad
    assert f.recordings == 1


def test_every_node_of_a_replayed_loss_is_eagers():
    """Not only the loss and the gradients: every node of the replayed graph
    holds eager code's bits, the thousand squares included, among them some
    near a tie where pow(e, 2) and e * e differ by an ulp (a sum of a
    thousand such terms may round the ulp away)."""
    xs, ys, w, b, book_loss = book_problem(11, 1000)
    errors = [y - (w.data * x + b.data) for x, y in zip(xs, ys, strict=True)]
    assert any(math.pow(e, 2) != e * e for e in errors)  # the data reach such a tie
    f = agrad.compile(book_loss)
    f(xs, ys)
    replayed = f(xs, ys)
    eager = book_loss(xs, ys)
    assert node_bits(replayed) == node_bits(eager)
    assert f.recordings == 1


def test_an_int_written_into_a_replayed_node_is_replaced_by_a_float():
    """A replay's loops over arrays leave the int marks of the nodes they
    write as the last complete run left them, for as long as no int is
    written anywhere: an int written into one of those nodes (the links of
    micrograd's chains, run four at a time; a group's relus) is overwritten
    by the next replay with eager's float, not read back as an int.
    (No constants: reading _prev would give them nodes of their own, and
    the program would be decoded again.)"""
    rng = random.Random(3)
    # each neuron's weights at consecutive ids, as agrad.nn makes them,
    # however fragmented the arena is after the other tests
    w1 = [_core._leaves([rng.uniform(-1, 1) for _ in range(2)]) for _ in range(8)]
    b1 = [Value(rng.uniform(-1, 1)) for _ in range(8)]
    w2 = _core._leaves([rng.uniform(-1, 1) for _ in range(8)])
    b2 = Value(0.5)
    points = [[rng.uniform(-2, 2), rng.uniform(-2, 2)] for _ in range(16)]

    def chain(w, x, b):
        return sum((wi * xi for wi, xi in zip(w, x, strict=True)), b)

    def run(points):
        scores = []
        for x in points:
            hidden = [chain(w1[j], x, b1[j]).relu() for j in range(8)]
            scores.append(chain(w2, hidden, b2))
        return sum(scores[1:], scores[0])

    f = agrad.compile(run)
    for _ in range(3):  # recorded, laid out, replayed
        f(points)
    replayed = f(points)
    nodes = [v for v in topological_order(replayed) if v._prev]
    for v in nodes:
        v.data = 7
    f(points)
    assert all(isinstance(v.data, float) for v in nodes)
    assert node_bits(replayed) == node_bits(run([[Value(a) for a in x] for x in points]))


def test_a_program_recorded_in_a_fragmented_arena_gives_eagers_bits():
    """Where older nodes left the arena full of holes, the recording's ids
    are too scattered to lay the groups out in place: the program moves to a
    span of free ids (Graph::free_span), its old ids freed, and every node
    still holds eager code's bits; recording again and again reuses such
    spans and keeps no node alive."""
    alive = [Value(float(i)) for i in range(20_000)][::2]  # every other node freed
    xs, ys, w, b, book_loss = book_problem(5, 500)
    gc.collect()
    live = _core._live_nodes()
    for _ in range(5):
        f = agrad.compile(book_loss)
        f(xs, ys)
        replayed = f(xs, ys)
        w.grad = b.grad = 0
        replayed.backward()
        got = node_bits(replayed), exact(w.grad)
        eager = book_loss(xs, ys)
        w.grad = b.grad = 0
        eager.backward()
        assert got == (node_bits(eager), exact(w.grad))
        del f, replayed, eager
        gc.collect()
        assert _core._live_nodes() == live
    assert len(alive) == 10_000


ACTIVATIONS = [Value.tanh, Value.relu, Value.sigmoid, lambda v: v]


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 12),  # the weights of a neuron: a dot's run of terms
    st.integers(4, 12),  # samples
    st.integers(1, 3),  # neurons
    st.sampled_from(
        ["bias term", "no bias", "self", "repeated weight", "reversed", "chain", "sum"]
    ),
    st.booleans(),  # the regulariser before the data term, or after
    st.integers(0, len(ACTIVATIONS) - 1),
    st.booleans(),  # the weights as the program's own nodes, laid out side by side
    st.data(),
)
def test_an_mlps_dots_replay_as_eager(width, samples, neurons, form, reg_first, act, through, data):
    """A layer of neurons over a batch, as agrad.nn writes it: each neuron a
    dot of its weights (made one after another: consecutive ids) with one
    sample's hidden values (made one after another, laid out side by side),
    so that backward runs each dot's terms as loops over arrays and groups
    the samples' dots, and forward runs four dots in lockstep (also as
    agrad.sum's runs, and as micrograd's chains of +); and a regulariser
    sum(p * p) that adds into every weight's gradient before or after the
    dots do.  Also dots that must not run as arrays: a sample's values
    dotted with themselves, a weight twice.
    (The leaves' ids are wherever the arena had room; weights made by the
    program itself, w * 1.0, are laid out side by side at the first replay.)
    The loss, every gradient, and on a second call with NaNs, infinities and
    signed zeros, the same bits as eager code, or the same exception."""
    weights = [[Value(data.draw(benign)) for _ in range(width)] for _ in range(neurons)]
    biases = [Value(data.draw(benign)) for _ in range(neurons)]
    inputs = [Value(data.draw(benign)) for _ in range(samples * width)]
    params = [p for row in weights for p in row] + biases
    leaves = params + inputs
    activation = ACTIVATIONS[act]

    def neuron(i, hidden, w):
        if form == "bias term":  # agrad.nn's [b, *w] . [1, *x]
            return agrad.dot([biases[i], *w], [1, *hidden])
        if form == "self":
            return agrad.dot(hidden, hidden)
        if form == "repeated weight":
            return agrad.dot([w[0], *w[:-1]], hidden)
        if form == "chain":  # micrograd's neuron: sum((wi * xi ...), b), a chain of +
            return sum((wi * xi for wi, xi in zip(w, hidden, strict=True)), biases[i])
        if form == "reversed":  # the weights in descending ids
            return agrad.dot(w[::-1], hidden[::-1])
        if form == "sum":  # agrad.sum's runs of nodes, parted by a constant
            products = [wi * xi for wi, xi in zip(w, hidden, strict=True)]
            half = len(products) // 2
            return agrad.sum([*products[:half], 0.5, *products[half:], biases[i]])
        return agrad.dot(w, hidden) + biases[i]

    def run():
        outs = []
        used = [[w * 1.0 for w in row] for row in weights] if through else weights
        for s in range(samples):
            hidden = [(v * 0.5).tanh() for v in inputs[s * width : (s + 1) * width]]
            outs.extend(activation(neuron(i, hidden, used[i])) for i in range(neurons))
        data_term = sum((1 + -o).tanh() for o in outs) / len(outs)
        reg = 1e-3 * sum(p * p for p in params)
        return reg + data_term if reg_first else data_term + reg

    # the second round's backward runs the kept schedule again
    replays_as_eager(agrad.compile(run), run, leaves, data, rounds=2)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 6),  # inputs
    st.integers(1, 6),  # hidden neurons
    st.integers(2, 6),  # samples
    st.sampled_from(
        [
            "plain",
            "partial sum reused",
            "hidden from a weight",
            "bias a weight",
            "weight twice",
            "x * w",  # the operands of each product swapped
            "w * x + s",  # each addition written term first
            "a weight an x",  # a chain's weight is also one of its x's
        ]
    ),
    st.booleans(),  # the hidden layer's outputs: relu, or used as they are
    st.booleans(),  # each weight made apart from the next (ids not consecutive)
    st.data(),
)
def test_micrograd_chains_replay_as_eager(nin, hidden, samples, form, relu, apart, data):
    """Two layers of micrograd's neurons, sum((w * x ...), b), chains of +.
    In backward()'s order a chain's links are parted by the subtrees of the
    layer below, which a kept schedule moves after the chain when no
    gradient's additions change order; and a chain whose partial sums and
    products feed nothing else passes one gradient down every link.  Also
    chains where neither holds: a partial sum used again, a hidden value
    made from a weight of the neuron reading it, a bias that is also a
    weight, a weight twice, a weight that is also an x; products written
    x * w, additions written term first (whose NaN rule differs on the
    hardware); weights at consecutive ids or apart.  The loss,
    every gradient, and on new numbers (NaNs, infinities, signed zeros)
    eager's bits, or the same exception."""
    spacers = []

    def weight():
        if apart:  # as in an arena whose free ids are scattered
            spacers.append(Value(0.0))
        return Value(data.draw(benign))

    w1 = [[weight() for _ in range(nin)] for _ in range(hidden)]
    b1 = [Value(data.draw(benign)) for _ in range(hidden)]
    w2 = [weight() for _ in range(hidden)]
    b2 = Value(data.draw(benign))
    inputs = [Value(data.draw(benign)) for _ in range(samples * nin)]
    params = [p for row in w1 for p in row] + b1 + w2 + [b2]
    leaves = params + inputs
    reused = data.draw(st.integers(0, nin * hidden - 1))  # which partial sum, a sample

    def chain(w, x, b, partials=None):
        total = b
        for wi, xi in zip(w, x, strict=True):
            if form == "x * w":
                total = total + xi * wi
            elif form == "w * x + s":
                total = wi * xi + total
            else:
                total = total + wi * xi
            if partials is not None:
                partials.append(total)
        return total

    def run():
        scores = []
        kept = []
        for s in range(samples):
            x = inputs[s * nin : (s + 1) * nin]
            partials: list[Value] = []
            h = [chain(w1[j], x, b1[j], partials) for j in range(hidden)]
            if form == "partial sum reused":  # a link's s' with a second parent
                kept.append(partials[reused] * 0.5)
            if form == "hidden from a weight":
                h[-1] = h[-1] + w2[0]  # its subtree adds into a weight of the chain above
            h = [v.relu() for v in h] if relu else h
            if form == "bias a weight":
                scores.append(chain(w2, h, w2[0]))
            elif form == "weight twice":
                scores.append(chain([w2[0], *w2[:-1]], h, b2))
            elif form == "a weight an x":
                scores.append(chain([*w2[:-1], h[0]], h, b2))
            else:
                scores.append(chain(w2, h, b2))
        total = sum((1 + -s).relu() for s in scores) * (1.0 / len(scores))
        return total + 1e-4 * sum(p * p for p in params) + sum(kept)

    replays_as_eager(agrad.compile(run), run, leaves, data, rounds=2)


@pytest.mark.parametrize("seed", range(10))
def test_a_chains_links_keep_their_order_with_a_subtree_that_shares_a_weight(seed):
    """A hidden value made from a weight of the neuron that reads it: in
    backward()'s order its subtree adds into that weight's gradient between
    two links of the neuron's chain, so the subtree must stay there (moved
    after the chain, the weight's additions would come in another order).
    Numbers of every magnitude, so that the order shows in the rounding."""
    rng = random.Random(seed)
    nin, hidden, samples = 3, 4, 5

    def draw():
        return Value(rng.uniform(-1, 1) * 2.0 ** rng.randint(-20, 20))

    w1 = [[draw() for _ in range(nin)] for _ in range(hidden)]
    b1 = [draw() for _ in range(hidden)]
    w2 = [draw() for _ in range(hidden)]
    b2 = draw()
    inputs = [draw() for _ in range(samples * nin)]
    params = [p for row in w1 for p in row] + b1 + w2 + [b2]

    def chain(w, x, b):
        return sum((wi * xi for wi, xi in zip(w, x, strict=True)), b)

    def run():
        scores = []
        for s in range(samples):
            x = inputs[s * nin : (s + 1) * nin]
            h = [chain(w1[j], x, b1[j]) for j in range(hidden)]
            h[-1] = h[-1] + w2[0]
            scores.append(chain(w2, h, b2))
        return sum(scores) * 0.3 + 1e-4 * sum(p * p for p in params)

    f = agrad.compile(run)
    f().backward()  # makes the kept schedule
    for p in params:
        p.grad = 0.0
    f().backward()
    got = [exact(p.grad) for p in params]
    for p in params:
        p.grad = 0.0
    run().backward()
    assert got == [exact(p.grad) for p in params]
