"""The engine never crashes, leaks or lies, whatever it is fed (issue 5).

Errors: the compiled engine raises what the pure one raises, for every op and
operand kind, and an op that raises leaves nothing behind.  Shapes: chains,
fan-outs and trees of millions of nodes are built, backpropagated and freed
without recursion.  Memory: flat over 30,000 training steps, and a dropped
graph is freed by reference counting alone.  Lifetime, threads, pickling.

The 10-million-node chain is marked ``slow``: ``pytest -m slow`` runs it.
"""

import copy
import gc
import math
import pickle
import random
import struct
import sys
import threading
import tracemalloc
import weakref

import numpy as np
import pytest

import agrad
import agrad.pure
from agrad import _core
from agrad.datasets import univariate_data
from agrad.linreg import LinReg, train

CLASSES = (agrad.Value, agrad.pure.Value)
ENGINES = [pytest.param(agrad.Value, id="native"), pytest.param(agrad.pure.Value, id="pure")]


@pytest.fixture(params=ENGINES)
def Value(request):
    return request.param


@pytest.fixture
def no_gc():
    """Reference counting alone: what a dropped graph needs the collector for
    would stay alive."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def bits(x):
    if type(x) is int:
        return ("int", x)
    return (type(x).__name__, struct.pack("<d", x))


def outcome(thunk):
    """("ok", bits of the data) or ("raised", type, message)."""
    try:
        result = thunk()
    except Exception as error:
        # Python's own "unsupported operand" text names the type by its
        # tp_name, which is qualified for the compiled class
        return ("raised", type(error), str(error).replace("agrad._core.Value", "Value"))
    return ("ok", bits(result.data) if hasattr(result, "data") else bits(result))


# -- the same exceptions as Python, on both engines ------------------------------

OPERAND_KINDS = {
    "int": 3,
    "zero": 0,
    "float": 2.5,
    "zero float": 0.0,
    "bool": True,
    "numpy float": np.float64(1.5),
    "numpy int": np.int64(-2),
    "huge int": 2**63,
    "str": "2",
    "None": None,
    "list": [1.0],
    "complex": 1j,
}
BINARY_OPS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "**": lambda a, b: a**b,
}
LEFT_DATA = [2.0, 0.0, -8.0, 10.0, 3, 0, 2**62, -(2**63)]


def operand(V, kind):
    return V(-1.5) if kind == "Value" else OPERAND_KINDS[kind]


@pytest.mark.parametrize("op", list(BINARY_OPS))
@pytest.mark.parametrize("kind", ["Value", *OPERAND_KINDS])
def test_binary_ops_raise_what_pure_raises(op, kind):
    for data in LEFT_DATA:
        for value_on_left in (True, False):
            results = []
            for V in (agrad.Value, agrad.pure.Value):
                v, other = V(data), operand(V, kind)
                args = (v, other) if value_on_left else (other, v)
                results.append(outcome(lambda args=args: BINARY_OPS[op](*args)))
            assert results[0] == results[1], (data, op, kind, value_on_left)


@pytest.mark.parametrize("method", ["exp", "log", "tanh", "relu", "sigmoid", "__neg__"])
def test_unary_ops_raise_what_pure_raises(method):
    special = [0, -1, 1, 0.0, -0.0, -1.0, 1000.0, -1000.0, 709.8, 1e-320, 2**62, -(2**63), True]
    special += [math.inf, -math.inf, math.nan]
    for data in special:
        results = [outcome(lambda V=V, x=data: getattr(V(x), method)()) for V in CLASSES]
        assert results[0] == results[1], (method, data)


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda V: V(10.0) ** 400, OverflowError),
        (lambda V: V(1000).exp(), OverflowError),
        (lambda V: V(1.0) / 0, ZeroDivisionError),
        (lambda V: 1 / V(0), ZeroDivisionError),
        (lambda V: V(0.0) ** -1, ZeroDivisionError),
        (lambda V: V(0).log(), ValueError),
        (lambda V: V(-2.0).log(), ValueError),
        (lambda V: V(-8.0) ** 0.5, ValueError),
        (lambda V: V(-(2**63)) ** 709.78, ValueError),
        (lambda V: -V(-(2**63)), OverflowError),
        (lambda V: V(2**62) + 2**62, OverflowError),
        (lambda V: V(3) ** 64, OverflowError),
        (lambda V: V(None), TypeError),
        (lambda V: V("1"), TypeError),
        (lambda V: V([1.0]), TypeError),
        (lambda V: V(1j), TypeError),
        (lambda V: V(1.0, label=3), TypeError),
        (lambda V: V(1.0, _children=[1.0]), TypeError),
        (lambda V: V(1.0, _children=3), TypeError),
        (lambda V: V(1.0) ** V(2.0), TypeError),
        (lambda V: pow(V(2), 3, 5), TypeError),
    ],
)
def test_errors_are_pythons_own_on_both_engines(make, error):
    results = []
    for V in CLASSES:
        with pytest.raises(error) as info:
            make(V)
        results.append(str(info.value))
    if error is not TypeError:  # a TypeError's text may name the engine's own argument parsing
        assert results[0] == results[1]


def test_the_messages_are_pythons_for_the_same_float_arithmetic():
    cases = [
        (lambda V: V(10.0) ** 400, lambda: 10.0**400),
        (lambda V: V(1000.0).exp(), lambda: math.exp(1000.0)),
        (lambda V: V(0.0).log(), lambda: math.log(0.0)),
        (lambda V: V(-8.0) ** 0.5, None),  # Python gives a complex: agrad's own message
        (lambda V: V(1.0) / 0.0, lambda: 0.0**-1),  # a / b is a * b**-1, as in the book
        (lambda V: V(0.0) ** -1, lambda: 0.0**-1),
    ]
    for make, plain in cases:
        want = "negative number cannot be raised to a fractional power"
        if plain is not None:
            with pytest.raises((ArithmeticError, ValueError)) as expected:
                plain()
            want = str(expected.value)
        for V in CLASSES:
            with pytest.raises((ArithmeticError, ValueError)) as got:
                make(V)
            assert str(got.value) == want


@pytest.mark.parametrize("attribute", ["data", "grad"])
@pytest.mark.parametrize("kind", list(OPERAND_KINDS))
def test_setters_accept_numbers_and_refuse_the_rest_as_pure_does(attribute, kind):
    results = []
    for V in CLASSES:
        v = V(1.0)
        unchanged = bits(getattr(v, attribute))
        try:
            setattr(v, attribute, OPERAND_KINDS[kind])
            results.append(("ok", bits(getattr(v, attribute))))
        except Exception as error:
            results.append(("raised", type(error), str(error)))
            assert bits(getattr(v, attribute)) == unchanged
    assert results[0] == results[1]


def test_label_must_be_a_str(Value):
    v = Value(1.0, label="w")
    with pytest.raises(TypeError):
        v.label = 3
    assert v.label == "w"


def test_nan_and_inf_flow_through_as_python_floats_do(Value):
    nan, inf = math.nan, math.inf
    cases = [
        (lambda v: v + 1, nan, lambda x: x + 1),
        (lambda v: v * 0, inf, lambda x: x * 0),
        (lambda v: v - v, inf, lambda x: x + x * -1),
        (lambda v: v / v, inf, lambda x: x * x**-1),
        (lambda v: v.exp(), -inf, math.exp),
        (lambda v: v.log(), inf, math.log),
        (lambda v: v.tanh(), -inf, math.tanh),
        (lambda v: v.sigmoid(), -inf, lambda x: 0.0),
        (lambda v: v.relu(), nan, lambda x: x),
        (lambda v: v**0, nan, lambda x: x**0),
        (lambda v: v**2, -inf, lambda x: x**2),
    ]
    for make, x, plain in cases:
        got, want = make(Value(x)).data, plain(x)
        assert math.isnan(got) == math.isnan(want)
        if not math.isnan(want):
            assert bits(got) == bits(want)


def test_a_nan_keeps_its_sign_through_negation(Value):
    """-v is v * -1, and a multiply keeps the sign of its one nan operand.

    The compiler used to fold x * -1.0 into -x, which flips it.
    """
    for x in (math.nan, -math.nan):
        assert math.copysign(1.0, (-Value(x)).data) == math.copysign(1.0, x * -1)
        assert math.copysign(1.0, (Value(x) - 1.0).data) == math.copysign(1.0, x + -1.0)


def test_a_diverging_training_run_overflows_on_both_engines():
    random.seed(42)
    xs, ys = univariate_data(20)
    messages = []
    for V in CLASSES:
        random.seed(1)
        model = LinReg(value_class=V)
        with pytest.raises(OverflowError) as info:
            train(model, xs, ys, learning_rate=1.0, n_epochs=10_000, log_every=None)
        messages.append(str(info.value))
    assert "training diverged at epoch" in messages[0]
    assert messages[0] == messages[1]


# -- nothing half-done ------------------------------------------------------------

FAILING_OPS = [
    lambda v, w: v**400,
    lambda v, w: (v * 100).exp(),
    lambda v, w: v / 0,
    lambda v, w: (v - v) ** -1,
    lambda v, w: (v - v).log(),
    lambda v, w: v * "x",
    lambda v, w: v + None,
    lambda v, w: w + 2**62 + 2**62,
    lambda v, w: agrad.sum([v, w, 2**63]),
    lambda v, w: agrad.dot([v, w], [1.0]),
    lambda v, w: agrad.dot([w, w], [2**62, 2**62]),
]


def test_a_failed_op_leaves_no_node_and_no_gradient_changed(no_gc):
    v, w = agrad.Value(10.0), agrad.Value(2**62)
    v.grad, w.grad = 0.25, -3.0
    before = _core._live_nodes()
    for op in FAILING_OPS:
        with pytest.raises((ArithmeticError, ValueError, TypeError)):
            op(v, w)
        assert _core._live_nodes() == before
        assert (v.grad, w.grad) == (0.25, -3.0)
        assert (v.data, w.data) == (10.0, 2**62)


def test_a_failed_backward_leaves_the_graph_at_zero_and_others_alone(Value, no_gc):
    x = Value(1e-200)
    outside = Value(5.0)
    outside.grad = 7.0
    y = x**-1.5 + x * 3  # forward: 1e300; backward: 1.5 * x**-2.5 overflows
    x.grad = 4.0
    before = _core._live_nodes()
    with pytest.raises(OverflowError):
        y.backward()
    assert (x.grad, y.grad) == (0.0, 0.0)
    assert outside.grad == 7.0
    assert _core._live_nodes() == before


# -- no recursion, any shape ------------------------------------------------------


def rss_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def chain(V, n):
    x = V(1.0)
    y = x
    for _ in range(n):
        y = y * 1.0 + 0.0
    return x, y


@pytest.mark.parametrize(
    "n", [1_000_000, pytest.param(10_000_000, marks=pytest.mark.slow, id="10M")]
)
def test_a_long_chain_is_built_backpropagated_and_freed(n, no_gc):
    before = _core._live_nodes()
    x, y = chain(agrad.Value, n // 2)  # two nodes a link
    assert _core._live_nodes() - before == n + 1
    y.backward()
    y.backward()  # the second sweep reuses the first one's scratch
    assert (x.grad, y.data) == (1.0, 1.0)
    del y
    assert _core._live_nodes() - before == 1


def test_a_pure_chain_is_freed_without_recursion(no_gc):
    x, y = chain(agrad.pure.Value, 200_000)
    y.backward()
    assert x.grad == 1.0
    last = weakref.ref(y)
    del y
    assert last() is None


def test_a_node_used_100000_times(Value, no_gc):
    n = 100_000
    before = _core._live_nodes()
    x = Value(0.5)
    terms = [x * float(i) for i in range(n)]
    total = sum(terms)
    total.backward()
    assert x.grad == float(sum(range(n)))  # exact: every partial sum is an integer below 2**53
    del terms, total
    if Value is agrad.Value:
        assert _core._live_nodes() - before == 1


def balanced_tree(V, leaves):
    level = [V(1.0) for _ in range(leaves)]
    first = level
    while len(level) > 1:
        level = [level[i] + level[i + 1] for i in range(0, len(level), 2)]
    return first, level[0]


def test_a_deep_left_tree_and_a_wide_balanced_tree(Value, no_gc):
    native = Value is agrad.Value
    before = _core._live_nodes()
    # depth 500,000: every node has a fresh leaf beside the rest of the tree
    depth = 500_000 if native else 100_000
    root = Value(1.0)
    leaves = []
    for i in range(depth):
        leaves.append(Value(float(i % 3 - 1)))
        root = root + leaves[-1] * 1e-9
    root.backward()
    assert {leaf.grad for leaf in leaves} == {1e-9}
    del root, leaves
    # 2**20 leaves, 20 levels
    first, top = balanced_tree(Value, 2**20 if native else 2**16)
    top.backward()
    assert top.data == float(len(first))
    assert {v.grad for v in first} == {1.0}
    del first, top
    if native:
        assert _core._live_nodes() == before


@pytest.mark.slow
def test_report_the_10m_chain_cost(capsys):
    """Not an assertion on time: prints what a 10M-node chain costs, for docs/reliability.md."""
    import time

    gc.collect()
    rss0, t0 = rss_bytes(), time.perf_counter()
    x, y = chain(agrad.Value, 5_000_000)
    t1 = time.perf_counter()
    rss1 = rss_bytes()
    y.backward()
    t2 = time.perf_counter()
    del y
    t3 = time.perf_counter()
    with capsys.disabled():
        print(
            f"\n10M-node chain: build {t1 - t0:.2f} s, backward {t2 - t1:.2f} s, "
            f"free {t3 - t2:.2f} s, RSS +{(rss1 - rss0) / 2**20:.0f} MiB"
        )
    assert x.grad == 1.0


# -- memory ---------------------------------------------------------------------


def multivariate_data(n=200, seed=7):
    """The chapter's multivariate set-up: three inputs, a known linear truth."""
    rng = random.Random(seed)
    X = [[rng.uniform(-5, 5) for _ in range(3)] for _ in range(n)]
    ys = [1.5 * a - 2.0 * b + 0.5 * c + 3.0 + rng.gauss(0, 1) for a, b, c in X]
    return X, ys


def test_memory_is_flat_over_30000_training_steps():
    X, ys = multivariate_data()
    random.seed(3)
    model = LinReg(n_inputs=3)
    train(model, X, ys, n_epochs=500, batch_size=50, learning_rate=0.01, log_every=None)
    gc.collect()
    nodes, rss = _core._live_nodes(), rss_bytes()
    tracemalloc.start()
    try:
        train(model, X, ys, n_epochs=30_000, batch_size=50, learning_rate=0.01, log_every=None)
        gc.collect()
        python_growth = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert _core._live_nodes() == nodes
    assert python_growth < 64 * 1024  # Python objects still held: a few transient ones at most
    assert rss_bytes() - rss < 8 * 2**20  # the arena and the heap: no growth beyond noise
    assert model.weights[0].data == pytest.approx(1.5, abs=0.2)


@pytest.mark.parametrize("backward", [False, True])
def test_a_dropped_loss_is_freed_at_once_without_the_collector(Value, backward, no_gc):
    X, ys = multivariate_data(20)
    weights = [Value(0.1 * i) for i in range(3)]
    before = _core._live_nodes()
    loss = sum(
        (sum(w * x for w, x in zip(weights, xi, strict=True)) - y) ** 2
        for xi, y in zip(X, ys, strict=True)
    )
    if backward:
        loss.backward()
    interior = next(iter(loss._prev))
    refs = [weakref.ref(loss), weakref.ref(interior)]
    del loss, interior
    assert [r() for r in refs] == [None, None]
    assert _core._live_nodes() == before
    assert gc.collect() == 0 or Value is agrad.Value  # nothing was waiting for the collector


# -- lifetime -------------------------------------------------------------------


def test_a_child_kept_after_its_graph_is_dropped(Value, no_gc):
    a, b = Value(3.0), Value(-2.0)
    loss = (a * b + 2.5) * a
    loss.backward()
    inner = next(c for c in loss._prev if c is not a)  # a*b + 2.5
    constant = next(c for c in inner._prev if c._op == "")  # the 2.5 leaf
    want = [(inner.data, inner.grad), (constant.data, constant.grad)]
    del loss
    gc.collect()
    churn = [Value(float(i)) * 2 for i in range(10_000)]  # reuse freed slots
    del churn
    assert [(inner.data, inner.grad), (constant.data, constant.grad)] == want
    assert want == [(-3.5, 3.0), (2.5, 3.0)]
    inner.backward()  # its own graph is intact
    assert (a.grad, b.grad) == (-2.0, 3.0)


def test_parameters_outlive_many_graphs(Value):
    w = Value(0.5, label="w")
    for step in range(2000):
        loss = (w * float(step % 5) - 1.0) ** 2
        loss.backward()
        w.data -= 0.01 * w.grad
    assert w.label == "w"
    assert isinstance(w.data, float)
    assert (w * 2).data == w.data * 2


def test_values_stay_usable_after_backward(Value):
    x = Value(2.0)
    y = x * x
    y.backward()
    z = y * 3 + x  # builds on a graph that was already differentiated
    z.backward()
    assert (x.grad, y.grad, z.grad) == (13.0, 3.0, 1.0)
    y.backward()
    assert x.grad == 4.0


def test_a_graph_built_in_one_thread_is_read_in_another(Value):
    def build():
        a = Value(1.5, label="a")
        built["loss"] = (a * a).tanh() + a

    built = {}
    build()
    here = built.pop("loss")
    here.backward()
    (a,) = [c for c in here._prev if c.label == "a"]
    want = (a.data, a.grad, here.data)

    thread = threading.Thread(target=build)
    thread.start()
    thread.join()
    seen = {}

    def read():
        loss = built.pop("loss")
        loss.backward()
        (child,) = [c for c in loss._prev if c.label == "a"]
        seen["a"] = (child.data, child.grad, loss.data)

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    assert seen["a"] == want


# -- threads --------------------------------------------------------------------


def train_one(V, seed):
    rng = random.Random(seed)
    X = [[rng.uniform(-5, 5) for _ in range(3)] for _ in range(30)]
    ys = [2 * a - b + 0.5 * c + rng.gauss(0, 1) for a, b, c in X]
    weights = [V(rng.uniform(-1, 1)) for _ in range(3)]
    b = V(0.0)
    losses = []
    for _ in range(200):
        loss = sum(
            (sum(w * x for w, x in zip(weights, xi, strict=True)) + b - y) ** 2
            for xi, y in zip(X, ys, strict=True)
        )
        loss = loss / len(X)
        for p in [*weights, b]:
            p.grad = 0.0
        loss.backward()
        for p in [*weights, b]:
            p.data -= 0.01 * p.grad
        losses.append(bits(loss.data))
    return losses, [bits(p.data) for p in [*weights, b]]


def run_in_threads(targets):
    """Run each target in a thread of its own, switching threads as often as
    CPython allows, and wait for them all."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=target) for target in targets]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)


def test_threads_training_their_own_models_match_a_sequential_run(Value):
    seeds = range(4)
    sequential = [train_one(Value, s) for s in seeds]
    results = {}
    run_in_threads([lambda s=s: results.__setitem__(s, train_one(Value, s)) for s in seeds])
    assert [results[s] for s in seeds] == sequential


def test_threads_sharing_one_graph_see_whole_backward_passes():
    """On the native engine each backward() runs whole under the GIL: threads
    sharing a graph see a finished pass, never a half-summed gradient.  (The
    pure engine's backward is Python code that threads interleave: there,
    threads sharing a graph do get mixed gradients.)"""
    Value = agrad.Value
    w = Value(0.5)
    loss = sum((w * float(i) - 1.0) ** 2 for i in range(200))
    loss.backward()
    want = w.grad
    seen = []

    def hammer():
        for _ in range(200):
            loss.backward()
            seen.append(w.grad)

    run_in_threads([hammer] * 4)
    assert set(seen) == {want}


# -- save and restore -----------------------------------------------------------


@pytest.mark.parametrize("data", [3, -(2**63), 2.5, -0.0, math.inf, 1e-320])
@pytest.mark.parametrize("save", ["pickle", "deepcopy", "copy"])
def test_a_value_round_trips_as_a_leaf(Value, data, save):
    v = Value(data, label="w₀")
    v.grad = -1.25
    restore = {
        "pickle": lambda x: pickle.loads(pickle.dumps(x)),
        "deepcopy": copy.deepcopy,
        "copy": copy.copy,
    }[save]
    r = restore(v)
    assert type(r) is Value and r is not v
    assert (bits(r.data), r.grad, r.label, r._op, r._prev) == (bits(data), -1.25, "w₀", "", set())
    r.data = 1.0  # independent of the original
    assert bits(v.data) == bits(data)


def test_a_nan_value_round_trips(Value):
    r = pickle.loads(pickle.dumps(Value(math.nan)))
    assert math.isnan(r.data)


def test_an_interior_value_pickles_as_a_leaf(Value):
    a = Value(2.0)
    y = a * 3.0
    y.backward()
    r = pickle.loads(pickle.dumps(y))
    assert (r.data, r.grad, r._prev) == (6.0, 1.0, set())


def test_a_trained_linreg_round_trips(Value):
    X, ys = multivariate_data(40)
    random.seed(5)
    model = LinReg(n_inputs=3, feature_names=["a", "b", "c"], value_class=Value)
    train(model, X, ys, n_epochs=200, learning_rate=0.01, log_every=None)
    for restored in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert repr(restored) == repr(model)
        saved = [(bits(p.data), p.grad, p.label) for p in model.parameters()]
        assert [(bits(p.data), p.grad, p.label) for p in restored.parameters()] == saved
        assert all(type(p) is Value for p in restored.parameters())
        assert bits(restored(X[0]).data) == bits(model(X[0]).data)
        # it trains on, independently of the original, to the same bits
        twin = copy.deepcopy(model)
        train(restored, X, ys, n_epochs=5, learning_rate=0.01, log_every=None)
        train(twin, X, ys, n_epochs=5, learning_rate=0.01, log_every=None)
        assert [bits(p.data) for p in restored.parameters()] == [
            bits(p.data) for p in twin.parameters()
        ]
        assert [(bits(p.data), p.grad, p.label) for p in model.parameters()] == saved
