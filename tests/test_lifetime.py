"""Memory, freeing and lifetime: what happens to nodes, on both engines.

Shapes: chains, fan-outs and trees of millions of nodes are built,
backpropagated and freed without recursion.  Memory: flat over 30,000 training
steps, and a dropped graph is freed by reference counting alone.  Lifetime: a
Value outlives its graph, its parameters outlive many graphs.  Threads: each
training its own model, or sharing one graph.

The 10-million-node chain is marked ``slow``: ``pytest -m slow`` runs it.
"""

import gc
import os
import random
import sys
import threading
import time
import tracemalloc
import weakref

import pytest
from engines import exact

import agrad
import agrad.pure
from agrad import _core
from agrad.linreg import LinReg, train

# -- no recursion, any shape ------------------------------------------------------------


# tools/sanitize.sh preloads AddressSanitizer's runtime
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


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


# -- memory -----------------------------------------------------------------------------


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
    assert model.weights[0].data == pytest.approx(1.5, abs=0.2)
    if UNDER_ASAN:
        pytest.skip(
            "RSS under AddressSanitizer: freed memory waits in its quarantine (256 MB) and "
            "every allocation has shadow memory, so RSS grows by design; the live nodes and "
            "Python objects above were checked, and LeakSanitizer checks the rest"
        )
    assert rss_bytes() - rss < 8 * 2**20  # the arena and the heap: no growth beyond noise


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


# -- lifetime ---------------------------------------------------------------------------


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


# -- threads ----------------------------------------------------------------------------


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
        losses.append(exact(loss.data))
    return losses, [exact(p.data) for p in [*weights, b]]


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
    w = agrad.Value(0.5)
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
