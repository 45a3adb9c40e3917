"""agrad.compile: a replayed graph gives eager agrad's data, gradients and
errors bit for bit; the guard; argument structures; memory; threads."""

import gc
import math
import numbers as numbers_abc
import random
import threading
import tracemalloc
from fractions import Fraction

import numpy as np
import pytest
from engines import exact
from hypothesis import given, settings
from hypothesis import strategies as st

import agrad
from agrad import Value
from agrad.linreg import LinReg, train
from agrad.pure import topological_order


def as_values(obj):
    """The arguments as eager agrad sees them when recorded: every number a leaf."""
    if type(obj) in (list, tuple):
        return type(obj)(as_values(o) for o in obj)
    if isinstance(obj, np.ndarray):
        return np.array([Value(x) for x in obj.ravel().tolist()], dtype=object).reshape(obj.shape)
    return Value(obj)


def state(params):
    return [(exact(p.data), exact(p.grad)) for p in params]


def outcome_of(thunk):
    try:
        return ("ok", thunk())
    except (ArithmeticError, ValueError) as error:
        return ("raised", type(error), str(error))


def test_replay_matches_eager_data_and_gradients():
    random.seed(3)
    w = [Value(0.5), Value(-0.25)]
    b = Value(0.1)

    def loss(xs, ys):
        errors = [(y - (agrad.dot(w, x) + b)) ** 2 for x, y in zip(xs, ys, strict=True)]
        return agrad.sum(errors) / len(ys) + (w[0] * w[0]).tanh()

    f = agrad.compile(loss)
    for _ in range(6):
        xs = [[random.gauss(0, 1), random.gauss(0, 1)] for _ in range(9)]
        ys = [random.gauss(0, 1) for _ in range(9)]
        replayed = f(xs, ys)
        replayed.backward()
        got = exact(replayed.data), state([*w, b])
        eager = loss(as_values(xs), as_values(ys))
        eager.backward()
        assert got == (exact(eager.data), state([*w, b]))
        # the same numbers as plain floats too: the chapter's loss does not tell
        eager_floats = loss(xs, ys)
        eager_floats.backward()
        assert got == (exact(eager_floats.data), state([*w, b]))
        for p in [*w, b]:
            p.data -= 0.1 * p.grad
    assert f.recordings == 1


@pytest.mark.parametrize("batch_size", [None, 3])
def test_train_compiled_is_eager_bit_for_bit(batch_size):
    def run(compiled):
        random.seed(7)
        xs = [[random.uniform(-5, 5), random.uniform(-5, 5)] for _ in range(20)]
        ys = [2 * x[0] - x[1] + random.gauss(0, 1) for x in xs]
        model = LinReg(n_inputs=2)
        history = []
        train(
            model,
            xs,
            ys,
            n_epochs=40,
            learning_rate=0.01,
            batch_size=batch_size,
            log_every=None,
            history=history,
            compile=compiled,
        )
        return [exact(p.data) for p in model.parameters()], [exact(h) for h in history]

    assert run(True) == run(False)


# Random expressions over three inputs and one parameter, as the fuzzer builds them.
UNARY = [
    lambda a: -a,
    lambda a: a.exp(),
    lambda a: a.log(),
    lambda a: a.tanh(),
    lambda a: a.relu(),
    lambda a: a.sigmoid(),
    lambda a: a**2,
    lambda a: a**-1,
    lambda a: a**0.5,
    lambda a: 2.5 - a,
    lambda a: 1.5 / a,
]
BINARY = [
    lambda a, b: a + b,
    lambda a, b: a - b,
    lambda a, b: a * b,
    lambda a, b: a / b,
    lambda a, b: agrad.sum([a, b, a, 1.5]),
    lambda a, b: agrad.dot([a, b], [b, 0.5]),
    # terms of nodes only, which the forward and backward passes loop over
    lambda a, b: agrad.sum([a, b, a, b]),
    lambda a, b: agrad.dot([a, b, a, b], [b, a, a, 1.5]),
    # constants ahead of the first node, which may keep the total an int
    lambda a, b: agrad.sum([1, 2, a, 3, b], 4),
    lambda a, b: agrad.dot([2, a, 1.5, 3], [3, b, 2, 4]),
]

expressions = st.lists(
    st.tuples(st.booleans(), st.integers(0, 100), st.integers(0, 100), st.integers(0, 100)),
    min_size=1,
    max_size=12,
)
numbers = st.one_of(
    st.floats(-30, 30, allow_nan=False), st.integers(-50, 50), st.sampled_from([0, 0.0, 1e-200])
)


def build(program, xs, param):
    pool = [*xs, param]
    for is_unary, op, i, j in program:
        a, b = pool[i % len(pool)], pool[j % len(pool)]
        pool.append(UNARY[op % len(UNARY)](a) if is_unary else BINARY[op % len(BINARY)](a, b))
    return pool[-1] if len(pool) > 4 else pool[0] * param


@settings(max_examples=200, deadline=None)
@given(
    expressions,
    st.lists(numbers, min_size=3, max_size=3),
    st.lists(numbers, min_size=3, max_size=3),
    numbers,
    numbers,
)
def test_replay_with_new_numbers_matches_eager(program, first, second, p, p_later):
    """Ints and floats in the inputs and the parameter, which may change type
    between the recording and the replay: the replay of floats only
    (replay.hpp) and the general one must both give eager's bits and types."""
    param = Value(p)
    f = agrad.compile(lambda xs: build(program, xs, param))
    recorded = outcome_of(lambda: f(first))
    eager_first = outcome_of(lambda: build(program, as_values(first), param))
    assert (recorded[0], recorded[1:] if recorded[0] == "raised" else ()) == (
        eager_first[0],
        eager_first[1:] if eager_first[0] == "raised" else (),
    )
    if recorded[0] == "raised":
        return
    param.data = p_later
    replayed = outcome_of(lambda: f(second))
    eager = outcome_of(lambda: build(program, as_values(second), param))
    if eager[0] == "raised":
        assert replayed == eager
        return
    assert replayed[0] == "ok"
    assert exact(replayed[1].data) == exact(eager[1].data)
    got = outcome_of(lambda: replayed[1].backward())
    got_grad = exact(param.grad)
    want = outcome_of(lambda: eager[1].backward())
    assert got == want
    assert got_grad == exact(param.grad)


def test_an_overflow_raises_as_eager_and_leaves_parameters_alone():
    w = Value(2.0)
    f = agrad.compile(lambda x: (w * x).exp())
    f(1.0).backward()
    before = state([w])
    with pytest.raises(OverflowError, match="math range error"):
        f(1000.0)
    with pytest.raises(OverflowError, match="math range error"):
        (w * Value(1000.0)).exp()
    assert state([w]) == before
    assert exact(f(0.5).data) == exact(math.exp(1.0))


def test_parameters_are_read_at_every_call():
    w = Value(3)
    f = agrad.compile(lambda x: w * x)
    assert exact(f(2).data) == exact(6)
    w.data = 0.5
    assert exact(f(2).data) == exact(1.0)
    w.data = 4
    assert exact(f(2).data) == exact(8)


@pytest.mark.parametrize(
    "read",
    [lambda v: v.data, lambda v: float(v.data), lambda v: v.data > 0, lambda v: bool(v.data)],
)
def test_reading_data_while_recording_raises(read):
    w = Value(1.0)

    def fn(x):
        y = x * w
        read(y)
        return y

    f = agrad.compile(fn)
    live = agrad._core._live_nodes()
    with pytest.raises(agrad.RecordingError, match=r"read a Value's \.data while being recorded"):
        f(2.0)
    assert agrad._core._live_nodes() == live  # the aborted recording let its nodes go
    assert f.recordings == 0
    assert exact(w.data) == exact(1.0)  # outside a recording, data reads as ever


def test_writing_data_while_recording_raises_and_parameters_too():
    w = Value(1.0)

    def fn(x):
        w.data = 2.0
        return x * w

    with pytest.raises(RuntimeError, match="while being recorded"):
        agrad.compile(fn)(1.0)
    with pytest.raises(RuntimeError, match="while being recorded"):
        agrad.compile(lambda x: x * w.data)(1.0)


def test_argument_structures():
    w = Value(0.5)
    calls = []

    def fn(a, b, c=1.0):
        calls.append(1)
        total = w * c
        for x in a:
            total = total + (x[0] * x[1] if isinstance(x, tuple) else x)
        return [total, total * b[0, 1]]

    f = agrad.compile(fn)
    a = [(1.0, 2.0), 3, (4, 5.5)]
    b = np.array([[1.0, 2.0], [3.0, 4.0]])
    out = f(a, b, c=2)
    assert isinstance(out, list) and len(out) == 2
    for args in [([(2.0, 1.0), 7, (0, -1.5)], b * 3), ([(1, 2), 3, (4, 5)], b.astype(int))]:
        got = [exact(v.data) for v in f(*args, c=3)]
        eager = fn(as_values(args[0]), as_values(args[1]), c=Value(3))
        assert got == [exact(v.data) for v in eager]
    recorded = len(calls)
    # ints stay ints: int inputs replay with int arithmetic, as eager does
    g = agrad.compile(lambda x, y: x * y + 1)
    assert exact(g(2.5, 2).data) == exact(6.0)
    assert exact(g(2, 3).data) == exact(7)
    assert g.recordings == 1
    # a new structure records again; the same one does not
    f([(1.0, 2.0), 3], b, c=2)
    f([(1.0, 2.0), 3], b, c=2)
    assert len(calls) == recorded + 1  # one recording, then a replay
    assert f.recordings == 2


@pytest.mark.parametrize(
    "array",
    [
        np.arange(6.0).reshape(2, 3) / 7,  # float64, C order: read in place
        (np.arange(12.0).reshape(3, 4) / 7).T[::2, ::-1],  # strided and reversed
        np.arange(6.0).astype(">f8") / 3,  # another byte order
        np.arange(6.0, dtype=np.float32) / 3,
        np.arange(6),
        np.array([True, False, True]),
        np.array(2.5),  # no axes
        np.zeros((0, 3)),
    ],
)
def test_numpy_arrays_replay_the_numbers_ravel_gives(array):
    w = Value(3.0)
    f = agrad.compile(lambda a: w * agrad.sum(list(a.ravel()), 0.5))
    first = f(np.zeros_like(array))
    got = f(array)
    assert got is first and f.recordings == 1
    assert exact(got.data) == exact((w * agrad.sum(as_values(array).ravel().tolist(), 0.5)).data)


def test_a_new_structure_is_recorded_anew_never_replayed():
    calls = [
        ([1.0, 2.0],),
        ((1.0, 2.0),),
        ([1.0, [2.0]],),
        ([1.0, True],),
        ([1.0, 2.0, 3.0],),
        ([[1.0, 2.0], [3.0, 4.0]],),  # rows: read with one key
        ([(1.0, 2.0), (3.0, 4.0)],),
        ([[1.0, 2.0], (3.0, 4.0)],),
        ([[1.0, 2.0, 3.0], [4.0]],),
        ([[1.0], [2.0], [3.0], [4.0]],),
        ([[1.0, 2.0], [3.0, True]],),
        (np.zeros((2, 2)),),
        (np.zeros(4),),
        (1.0, "a"),
        (1.0, "b"),
        (1.0,),
    ]
    f = agrad.compile(lambda *a, **kw: Value(0.0) + 1.0, max_programs=64)
    for args in calls:
        f(*args)
        f(*args)
    f(1.0, k=2.0)
    f(1.0, j=2.0)
    assert f.recordings == len(calls) + 2


def test_rows_of_numbers_replay_in_order():
    w = [Value(0.5), Value(-2.0), Value(3)]

    def fn(rows, ys):
        return agrad.sum([(agrad.dot(w, row) - y) ** 2 for row, y in zip(rows, ys, strict=True)])

    f = agrad.compile(fn)
    for rows, ys in [
        ([[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]], [1.0, 2]),
        ([[7, 8, 9], [1.5, -2, 0.25]], [0, -1.0]),
        ([(7, 8, 9), (1.5, -2, 0.25)], (0, -1.0)),
    ]:
        got = f(rows, ys)
        assert exact(got.data) == exact(fn(as_values(rows), as_values(ys)).data)
    assert f.recordings == 2  # lists of lists, then tuples of tuples


def test_a_list_a_conversion_changes_is_read_from_a_private_copy():
    class Sly:
        """A real number whose conversion empties the list it sits in."""

        def __init__(self, items):
            self.items = items

        def __float__(self):
            self.items.clear()
            return 2.0

    numbers_abc.Real.register(Sly)
    f = agrad.compile(lambda xs: agrad.sum(xs))
    assert exact(f([1.0, Fraction(1), 3.0]).data) == exact(5.0)
    items = [1.0, None, 4.0]
    items[1] = Sly(items)
    assert exact(f(items).data) == exact(7.0)  # a replay: the numbers met before the clear
    assert f.recordings == 1
    with pytest.raises(OverflowError):
        f([1.0, 2**70, 3.0])


def test_bad_arguments_and_results():
    f = agrad.compile(lambda x: x)
    with pytest.raises(TypeError, match="not 'dict'"):
        f({"a": 1.0})
    with pytest.raises(TypeError, match="must be hashable"):
        f(bytearray(b"x"))
    with pytest.raises(TypeError, match="dtype"):
        f(np.array(["a"]))
    with pytest.raises(TypeError, match=r"must return an agrad\.Value"):
        agrad.compile(lambda x: 1.0)(2.0)
    with pytest.raises(TypeError, match="needs a function"):
        agrad.compile(3)
    with pytest.raises(ValueError, match="max_programs"):
        agrad.compile(lambda x: x, max_programs=0)
    with pytest.raises(ValueError, match="by hand"):
        agrad.compile(lambda x: Value(1.0, (x,), "f"))(2.0)


def test_the_cache_keeps_at_most_max_programs():
    f = agrad.compile(lambda xs: agrad.sum(xs), max_programs=2)
    for n in range(1, 6):
        assert exact(f([1.0] * n).data) == exact(float(n))
    assert f.recordings == 2
    assert f.program([1.0] * 5) is not None and f.program([1.0]) is None


def test_a_replayed_root_has_its_graph():
    w = Value(2.0, label="w")
    f = agrad.compile(lambda x: w * x + 1)
    f(1.0)
    root = f(3.0)
    assert root._op == "+"
    (product,) = [c for c in root._prev if c._op == "*"]
    assert w in product._prev
    assert exact(product.data) == exact(6.0)
    # after _prev made its constant a node, replays still recompute it
    assert exact(f(4.0).data) == exact(9.0)
    assert agrad.draw_dot(root).source.count("->") >= 3


def test_backward_on_a_replayed_root_after_its_graph_changed_shape():
    # The replayed root's backward pass reuses its schedule; once _prev has
    # made constants nodes, or a failing pass has run, it must still be eager's.
    w = Value(0.5)

    def fn(x, y):
        p = w * x * 2.5
        return (agrad.sum([p, p * y, 0.0]) ** 0.5 + agrad.dot([w, p], [3.0, y])) * (w - y)

    f = agrad.compile(fn)
    outcomes = set()
    for step, (x, y) in enumerate([(1.0, 2.0), (0.3, -1.0), (0.0, 0.0), (2.0, 0.5), (1.5, 3.0)]):
        root = f(x, y)
        got = outcome_of(root.backward)
        outcomes.add(got[0])
        grads = exact(w.grad), exact(root.grad)
        eager = fn(Value(x), Value(y))
        assert got == outcome_of(eager.backward)
        assert grads == (exact(w.grad), exact(eager.grad))
        if step == 0:  # the constants of the graph become nodes
            seen, stack = {}, [root]
            while stack:
                v = stack.pop()
                if id(v) not in seen:
                    seen[id(v)] = v
                    stack.extend(v._prev)
            grads_then = [exact(v.grad) for v in seen.values()]
            root.backward()
            assert [exact(v.grad) for v in seen.values()] == grads_then
    assert outcomes == {"ok", "raised"}  # 0 ** 0.5 has no gradient: both paths taken


def test_laying_out_a_program_moves_no_node_anything_else_holds():
    """The first replay gives the program's nodes new ids, group by group
    (Program::lay_out), but never a node that something outside the program
    refers to: a Value Python holds, or one a node made outside the recording
    reads.  Here h is held while recording, read by z outside it, then let go:
    z must still read h, holding the replayed number."""
    held = []

    def fn(xs):
        named = []
        for i, x in enumerate(xs):  # a sample's product, then its sum: the layout moves them
            h = x * 2.0
            if i == 1:
                held.append(h)
            named.append(h + 1.0)
            named[-1].label = f"n{i}"
        return sum(named)

    f = agrad.compile(fn)
    f([1.0, 2.0, 3.0, 4.0, 5.0])
    z = held[0] * 3.0  # made outside the recording, on a node of the program
    held.clear()  # no Python object holds h now; z does
    root = f([10.0, 20.0, 30.0, 40.0, 50.0])  # the first replay lays the program out
    assert exact(root.data) == exact(sum(2.0 * x + 1.0 for x in [10.0, 20.0, 30.0, 40.0, 50.0]))
    (h,) = [c for c in z._prev if c._op == "*"]
    assert exact(h.data) == exact(40.0)  # the replayed h, still z's child
    z.backward()
    assert h.grad == 3.0
    # the labels made while recording moved with their nodes
    named = sorted((v for v in topological_order(root) if v.label), key=lambda v: v.label)
    assert [v.label for v in named] == ["n0", "n1", "n2", "n3", "n4"]
    assert [v.data for v in named] == [21.0, 41.0, 61.0, 81.0, 101.0]
    assert f.recordings == 1


def test_calling_a_compiled_function_while_recording_is_an_error():
    inner = agrad.compile(lambda x: x * 2)
    inner(1.0)
    with pytest.raises(RuntimeError, match="while another is being recorded"):
        agrad.compile(lambda x: inner(x.data if False else 1.0) + x)(1.0)
    with pytest.raises(RuntimeError, match="while another is being recorded"):
        agrad.compile(lambda x: agrad.compile(lambda y: y)(1.0) + x)(1.0)


def test_memory_is_flat_over_many_replays():
    w = [Value(0.1 * i) for i in range(3)]
    f = agrad.compile(lambda xs: agrad.sum([(wi * x).tanh() for wi, x in zip(w, xs, strict=True)]))
    f([1.0, 2.0, 3.0]).backward()
    gc.collect()
    live = agrad._core._live_nodes()
    tracemalloc.start()
    try:
        for i in range(2000):
            f([i * 0.001, 1.0, 2.0]).backward()
        gc.collect()
        first, _ = tracemalloc.get_traced_memory()
        for i in range(100_000):
            f([i * 0.001, 1.0, 2.0]).backward()
        gc.collect()
        last, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert agrad._core._live_nodes() == live
    assert last - first < 16 * 1024


def test_a_dropped_compiled_function_frees_its_nodes():
    gc.collect()
    live = agrad._core._live_nodes()
    params = [Value(1.5)]
    f = agrad.compile(lambda x: (params[0] * x).exp() + x)
    f(1.0).backward()
    f(2.0)
    del f
    gc.collect()
    assert agrad._core._live_nodes() == live + 1  # the parameter
    params.clear()
    assert agrad._core._live_nodes() == live


def test_parameters_freed_by_the_caller_live_on_in_the_program():
    gc.collect()
    live = agrad._core._live_nodes()
    params = [Value(2.0)]
    f = agrad.compile(lambda x: params[0] * x)
    f(1.0)
    params.clear()
    gc.collect()
    root = f(5.0)
    root.backward()
    assert exact(root.data) == exact(10.0)
    (w_again,) = [c for c in root._prev if c.label == "" and exact(c.data) == exact(2.0)]
    assert exact(w_again.grad) == exact(5.0)
    del f, root, w_again
    gc.collect()
    assert agrad._core._live_nodes() == live


def test_threads_replaying_different_programs():
    def worker(seed, results):
        rng = random.Random(seed)
        w = Value(rng.uniform(-1, 1))
        f = agrad.compile(lambda x, y: ((w * x - y) ** 2).tanh())
        out = []
        for _ in range(300):
            x, y = rng.uniform(-2, 2), rng.uniform(-2, 2)
            loss = f(x, y)
            loss.backward()
            out.append((exact(loss.data), exact(w.grad)))
            w.data -= 0.01 * w.grad
        results[seed] = out

    threaded = {}
    threads = [threading.Thread(target=worker, args=(s, threaded)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    alone = {}
    for s in range(4):
        worker(s, alone)
    assert threaded == alone


def test_another_thread_reads_data_while_one_records():
    started, release = threading.Event(), threading.Event()
    w = Value(4.0)
    seen = []

    def fn(x):
        started.set()
        release.wait(5)
        return w * x

    def reader():
        started.wait(5)
        seen.append(w.data)  # not the recording thread: no guard
        release.set()

    t = threading.Thread(target=reader)
    t.start()
    root = agrad.compile(fn)(2.0)
    t.join()
    assert seen == [4.0] and exact(root.data) == exact(8.0)


@pytest.mark.parametrize(
    "argv",
    [["univariate"], ["batch", "--epochs", "15"], ["bodyfat", "--epochs", "30", "--raw"]],
)
def test_cli_compile_prints_what_eager_prints(argv, capsys):
    from agrad.__main__ import main

    def printed(extra):
        assert main(argv + extra) == 0
        return [line for line in capsys.readouterr().out.splitlines() if " s" not in line]

    assert printed(["--compile"]) == printed([])


def test_cli_compile_refuses_the_pure_engine(capsys):
    from agrad.__main__ import main

    with pytest.raises(SystemExit):
        main(["univariate", "--compile", "--engine", "pure"])
    assert "--compile needs the compiled engine" in capsys.readouterr().err


def test_train_compile_refuses_the_pure_engine():
    import agrad.pure

    with pytest.raises(ValueError, match="compiled engine"):
        train(LinReg(value_class=agrad.pure.Value), [1.0], [2.0], n_epochs=1, compile=True)


@pytest.mark.parametrize("later", [3, 2**60 + 1, True])
def test_an_int_written_between_replay_and_backward_is_read_as_an_int(later):
    """backward() on a kept schedule reads values without a type test while
    it knows them to be floats: any int written since must end that."""
    w1, w2 = Value(0.5), Value(1.25)
    f = agrad.compile(lambda x: (x * w1) * w2)
    for x in (2.0, 3.0):
        loss = f(x)
        loss.backward()  # the float-only backward pass, schedule kept
    w2.data = later
    loss.backward()
    got = exact(w1.grad), exact(w2.grad)
    eager = (Value(3.0) * w1) * w2
    eager.backward()
    assert got == (exact(w1.grad), exact(w2.grad))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50), st.booleans()), max_size=10),
    st.lists(st.floats(-3, 3), min_size=3, max_size=3),
    st.lists(st.floats(-3, 3), min_size=3, max_size=3),
)
def test_chains_of_products_replay_as_eager(links, first, second):
    """micrograd's neuron, s = s + w * x again and again, is replayed as one
    fused chain forward and backward: here with products of any earlier
    value, the running total and the product before included, either way
    round, against eager agrad, data and every parameter's gradient."""
    params = [Value(0.5), Value(-1.25), Value(2.0)]

    def chain(xs):
        pool = [*params, *xs]
        total = pool[0]
        for i, j, product_first in links:
            product = pool[i % len(pool)] * pool[j % len(pool)]
            total = product + total if product_first else total + product
            pool += [product, total]
        return total * 1.5

    f = agrad.compile(chain)
    f(first)
    replayed = f(second)
    replayed.backward()
    got = [exact(replayed.data), *(exact(p.grad) for p in params)]
    eager = chain([Value(x) for x in second])
    eager.backward()
    assert got == [exact(eager.data), *(exact(p.grad) for p in params)]
