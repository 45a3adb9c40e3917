"""The Value contract of docs/DESIGN.md, on both engines.

Each test runs on the compiled `agrad.Value` and on `agrad.pure.Value`; where
a result is compared, the pure engine is the reference and the comparison is
bit for bit.
"""

import gc
import math
import random
import struct

import pytest
from chapter import BOOK_TRAIN_LINES, book_points

import agrad
import agrad.pure

ENGINES = [pytest.param(agrad.Value, id="native"), pytest.param(agrad.pure.Value, id="pure")]


def bits(x):
    """The exact identity of a number: its type and its IEEE bits."""
    if isinstance(x, int):
        return ("int", x)
    return ("float", struct.pack("<d", x))


@pytest.fixture(params=ENGINES)
def Value(request):
    return request.param


def test_import_gives_the_compiled_type():
    assert agrad.Value.__module__ == "agrad._core"
    assert agrad.pure.Value is not agrad.Value


def test_the_book_example(Value):
    a = Value(2.0, label="a")
    b = Value(-3.0, label="b")
    c = Value(10.0, label="c")
    e = a * b
    e.label = "e"
    d = e + c
    d.label = "d"
    f = Value(-2.0, label="f")
    L = d * f
    L.label = "L"
    assert repr(L) == "Value(L: -8.0)"
    prev = L._prev
    assert prev == {d, f}
    assert {id(v) for v in prev} == {id(d), id(f)}  # the very objects
    L.backward()
    assert (a.grad, b.grad, c.grad, d.grad, e.grad, f.grad, L.grad) == (
        6.0,
        -4.0,
        -2.0,
        -2.0,
        -2.0,
        4.0,
        1.0,
    )


def test_ints_stay_ints(Value):
    assert repr(Value(10) * 10 + Value(3)) == "Value(: 103)"
    assert repr(Value(2) ** 3) == "Value(: 8)"
    assert repr(Value(2) ** -1) == "Value(: 0.5)"
    assert repr(Value(7) / 2) == "Value(: 3.5)"
    assert repr(Value(7) - 10) == "Value(: -3)"
    assert type(Value(3).data) is int
    assert type((Value(3) * 1.0).data) is float
    assert type(Value(True).data) is int


def test_repr_prints_floats_as_python_does(Value):
    for x in [0.1, 1e16, 1.5e-300, -0.0, float("inf"), float("nan"), 78.49574710788079]:
        assert repr(Value(x, label="x")) == f"Value(x: {x!r})"


def test_grad_is_always_a_float(Value):
    v = Value(3)
    assert v.grad == 0.0 and type(v.grad) is float
    v.grad = 0
    assert type(v.grad) is float
    (v * 2).backward()
    assert type(v.grad) is float and v.grad == 2.0


def test_data_and_label_are_writable(Value):
    v = Value(1.0, label="w")
    v.data -= 0.5
    v.label = "weight"
    assert v.data == 0.5 and v.label == "weight"


def test_composition_follows_the_book(Value):
    a, b = Value(3.0, label="a"), Value(4.0, label="b")
    diff = a - b  # a + (-b)
    assert diff._op == "+"
    (neg,) = [c for c in diff._children if c is not a]
    assert neg._op == "*" and {c.data for c in neg._children} == {4.0, -1}
    quotient = a / b  # a * b**-1
    assert quotient._op == "*"
    assert [c._op for c in quotient._children] == ["", "**-1"]
    assert (-a)._op == "*"
    assert (a**2)._op == "**2" and (a**0.5)._op == "**0.5"
    assert [c.data for c in (a * 2.5)._children] == [3.0, 2.5]
    assert [c.data for c in (2.5 * a)._children] == [3.0, 2.5]
    assert [c.data for c in (a + 1)._children] == [3.0, 1]
    assert [c.data for c in (1 - a)._children][1] == 1


def test_constants_show_as_leaves(Value):
    w = Value(2.0, label="w")
    y = w * 2.5
    (const,) = [c for c in y._prev if c is not w]
    assert const.data == 2.5 and const._prev == set() and const._op == ""
    assert y._prev == y._prev  # the same objects each time while held
    held = list(y._prev)
    assert {id(c) for c in y._prev} == {id(c) for c in held}


OPS = {
    "add": lambda a, b: a + b,
    "radd": lambda a, b: 1.5 + a,
    "sub": lambda a, b: a - b,
    "rsub": lambda a, b: 2.5 - a,
    "mul": lambda a, b: a * b,
    "rmul": lambda a, b: -3 * a,
    "div": lambda a, b: a / b,
    "rdiv": lambda a, b: 2.0 / a,
    "pow2": lambda a, b: a**2,
    "pow_float": lambda a, b: a**1.5,
    "pow_neg": lambda a, b: a**-2,
    "neg": lambda a, b: -a,
    "exp": lambda a, b: a.exp(),
    "log": lambda a, b: a.log(),
    "tanh": lambda a, b: a.tanh(),
    "relu": lambda a, b: a.relu(),
    "sigmoid": lambda a, b: a.sigmoid(),
    "mixed": lambda a, b: (a * b + a**3 - b / a).tanh() * a.exp() + (b * b).log(),
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("x, y", [(0.7, 1.3), (2.0, -0.4), (1.25, 3.0)])
def test_each_op_matches_pure_bit_for_bit(op, x, y):
    results = []
    for V in (agrad.Value, agrad.pure.Value):
        a, b = V(x), V(y)
        out = OPS[op](a, b)
        out.backward()
        results.append((bits(out.data), bits(a.grad), bits(b.grad)))
    assert results[0] == results[1]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("x, y", [(0.7, 1.3), (2.0, -0.4)])
def test_each_op_gradient_matches_finite_differences(Value, op, x, y):
    a, b = Value(x), Value(y)
    out = OPS[op](a, b)
    out.backward()
    h = 1e-6

    def f(u, v):
        return OPS[op](Value(u), Value(v)).data

    da = (f(x + h, y) - f(x - h, y)) / (2 * h)
    db = (f(x, y + h) - f(x, y - h)) / (2 * h)
    assert a.grad == pytest.approx(da, rel=1e-5, abs=1e-6)
    assert b.grad == pytest.approx(db, rel=1e-5, abs=1e-6)


def test_backward_twice_gives_the_same_gradients(Value):
    w = Value(0.5)
    loss = (w * 3 - 1) ** 2
    loss.backward()
    first = w.grad
    loss.backward()
    assert w.grad == first


def test_leaves_outside_the_graph_keep_their_grad(Value):
    outside = Value(1.0)
    outside.grad = 7.0
    w = Value(2.0)
    (w * w).backward()
    assert outside.grad == 7.0 and w.grad == 4.0


def test_shared_subexpressions_accumulate(Value):
    a = Value(3.0)
    b = a * a
    c = b + b
    c.backward()
    assert a.grad == 12.0 and b.grad == 2.0


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda V: V(10.0) ** 400, OverflowError),
        (lambda V: V(1000.0).exp(), OverflowError),
        (lambda V: V(0.0).log(), ValueError),
        (lambda V: V(-1.0).log(), ValueError),
        (lambda V: V(1.0) / 0, ZeroDivisionError),
        (lambda V: V(0.0) ** -1, ZeroDivisionError),
        (lambda V: V(-8.0) ** 0.5, ValueError),
        (lambda V: V(1.0) + "a", TypeError),
        (lambda V: V(1.0) * None, TypeError),
        (lambda V: V(1.0) ** V(2.0), TypeError),
        (lambda V: 2 ** V(2.0), TypeError),
        (lambda V: V("1.0"), TypeError),
        (lambda V: V(2**63), OverflowError),
        (lambda V: V(2**62) * 4, OverflowError),
    ],
)
def test_errors_are_pythons_own(Value, make, error):
    with pytest.raises(error):
        make(Value)


def test_error_messages_match_between_engines():
    cases = [
        lambda V: V(10.0) ** 400,
        lambda V: V(1000.0).exp(),
        lambda V: V(1.0) / 0,
        lambda V: V(0.0) ** -1,
        lambda V: V(-8.0) ** 0.5,
        lambda V: V([1.0]),
        lambda V: V(2**62) * 4,
    ]
    for case in cases:
        messages = []
        for V in (agrad.Value, agrad.pure.Value):
            with pytest.raises(Exception) as info:  # noqa: PT011 - any type, as long as both agree
                case(V)
            messages.append((type(info.value), str(info.value)))
        assert messages[0] == messages[1]


def test_overflow_is_pythons_own_message(Value):
    with pytest.raises(OverflowError) as native:
        Value(10.0) ** 400
    with pytest.raises(OverflowError) as plain:
        10.0**400
    assert str(native.value) == str(plain.value)


def test_a_failed_op_leaves_no_node_behind():
    a = agrad.Value(10.0)
    gc.collect()
    before = agrad._core._live_nodes()
    for _ in range(100):
        with pytest.raises(OverflowError):
            a**400
        with pytest.raises(ZeroDivisionError):
            a / 0
        with pytest.raises(TypeError):
            a * "x"
    assert agrad._core._live_nodes() == before


def test_a_million_node_sum_backpropagates_without_recursion(Value):
    # the pure engine is the slow reference: there the shape is what matters
    n = 200_000 if Value is agrad.pure.Value else 1_000_000
    total = sum(Value(1.0) for _ in range(n))
    total.backward()
    assert total.data == float(n)
    assert total.grad == 1.0


def test_a_million_node_chain_is_freed_without_recursion():
    x = agrad.Value(1.0)
    before = agrad._core._live_nodes()
    y = x
    for _ in range(1_000_000):
        y = y * 1.0
    y.backward()
    assert x.grad == 1.0
    del y
    assert agrad._core._live_nodes() == before


def test_memory_is_flat_over_a_training_loop():
    random.seed(1)
    xs = [random.uniform(-5, 5) for _ in range(50)]
    ys = [2 * x - 1 for x in xs]
    w, b = agrad.Value(0.1), agrad.Value(0.0)

    def step():
        loss = sum((y - (w * x + b)) ** 2 for x, y in zip(xs, ys, strict=True)) / len(xs)
        loss.backward()
        for p in (w, b):
            p.data -= 0.01 * p.grad

    step()
    start = agrad._core._live_nodes()
    for _ in range(2000):
        step()
    assert agrad._core._live_nodes() == start
    assert w.data == pytest.approx(2.0, abs=0.05)


# -- the chapter's own code, pasted, on each engine ------------------------------


def chapter_classes(Value):
    class LinReg:
        def __init__(self):
            self.w = Value(random.uniform(-1, 1), label="w")
            self.b = Value(0.0, label="b")

        def __call__(self, x):
            return self.w * x + self.b

        def parameters(self):
            return [self.w, self.b]

        def loss(self, xs, ys):
            yhats = [self(x) for x in xs]
            # the book prints the mean; its listing forgot the `/ len(xs)`
            return sum([(y - yhat) ** 2 for y, yhat in zip(ys, yhats)]) / len(xs)  # noqa: B905

        def __repr__(self):
            return f"LinReg(w={self.w.data:.3f}, b={self.b.data:.3f})"

    def train(model, xs, ys, learning_rate=0.001, n_epochs=1000):
        for k in range(n_epochs):
            loss = model.loss(xs, ys)
            for p in model.parameters():
                p.grad = 0
            loss.backward()
            for p in model.parameters():
                p.data -= learning_rate * p.grad
            if k % 50 == 0:
                print(f"{k:3} Loss: {loss.data:5.3f} {model}")
        return model

    return LinReg, train


def test_the_chapter_prints_the_books_numbers(Value, capsys):
    LinReg, train = chapter_classes(Value)
    model = LinReg()
    model.w = Value(10)
    model.b = Value(3)
    assert repr(model(10)) == "Value(: 103)"

    xs, ys = book_points()  # the chapter's: seed 42, five points
    lr = LinReg()
    assert repr(lr) == "LinReg(w=0.011, b=0.000)"
    assert repr(lr.loss(xs, ys)) == "Value(: 78.49574710788079)"

    train(LinReg(), xs, ys, learning_rate=0.01, n_epochs=500)
    assert capsys.readouterr().out == BOOK_TRAIN_LINES


def test_too_large_a_learning_rate_overflows_as_the_book_warns(Value, capsys):
    LinReg, train = chapter_classes(Value)
    xs, ys = book_points()
    with pytest.raises(OverflowError):
        train(LinReg(), xs, ys, learning_rate=1.0, n_epochs=500)


def test_both_engines_train_to_the_same_bits():
    runs = []
    for V in (agrad.Value, agrad.pure.Value):
        LinReg, _ = chapter_classes(V)
        random.seed(7)
        xs = [random.uniform(-10, 10) for _ in range(100)]
        ys = [2 * x + 1 + random.gauss(0, 5) for x in xs]
        model = LinReg()
        losses = []
        for _ in range(30):
            loss = model.loss(xs, ys)
            loss.backward()
            for p in model.parameters():
                p.data -= 0.01 * p.grad
            losses.append(bits(loss.data))
        runs.append((losses, bits(model.w.data), bits(model.b.data)))
    assert runs[0] == runs[1]


def test_gradients_agree_with_pytorch():
    torch = pytest.importorskip("torch")
    x = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(-1.3, dtype=torch.float64, requires_grad=True)
    out = (x * y + x**3 - y / x).tanh() * x.exp() + (y * y).log() + (x * 2).sigmoid()
    out.backward()
    a, b = agrad.Value(0.7), agrad.Value(-1.3)
    mine = (a * b + a**3 - b / a).tanh() * a.exp() + (b * b).log() + (a * 2).sigmoid()
    mine.backward()
    assert mine.data == pytest.approx(out.item(), rel=1e-12)
    assert a.grad == pytest.approx(x.grad.item(), rel=1e-12)
    assert b.grad == pytest.approx(y.grad.item(), rel=1e-12)


def test_fused_sum_and_dot_match_the_chain_bit_for_bit():
    random.seed(3)
    ws = [random.uniform(-1, 1) for _ in range(20)]
    xs = [random.uniform(-5, 5) for _ in range(20)]
    results = []
    for fused in (False, True):
        weights = [agrad.Value(w) for w in ws]
        b = agrad.Value(0.3)
        if fused:
            terms = [(agrad.dot(weights, xs) + b - y) ** 2 for y in xs]
            loss = agrad.sum(terms) / len(terms)
        else:
            terms = [
                (sum(w * x for w, x in zip(weights, xs, strict=True)) + b - y) ** 2 for y in xs
            ]
            loss = sum(terms) / len(terms)
        loss.backward()
        results.append([bits(loss.data)] + [bits(w.grad) for w in weights] + [bits(b.grad)])
    assert results[0] == results[1]
    assert math.isfinite(loss.data)


def every_node(root):
    """Every node reachable from root, depth first over _children, in order."""
    seen, order, stack = set(), [], [root]
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        order.append(v)
        stack.extend(reversed(v._children))
    return order


def test_every_node_including_constants_matches_pure_after_backward():
    graphs = []
    for V in (agrad.Value, agrad.pure.Value):
        a, b = V(1.5, label="a"), V(-2, label="b")
        out = ((a * 2.5 + 1) * -1 - b / 3 + 2 / a - 4) ** 2 + (7 - b).tanh()
        out.backward()
        graphs.append([(v._op, v.label, bits(v.data), bits(v.grad)) for v in every_node(out)])
    assert graphs[0] == graphs[1]


def test_a_constant_asked_for_before_backward_gets_its_gradient_after(Value):
    w = Value(3.0)
    y = w * 2.5
    (const,) = [c for c in y._children if c is not w]
    y.backward()
    assert const.grad == 3.0 and w.grad == 2.5


def test_fused_nodes_show_their_constants_as_leaves():
    w = [agrad.Value(0.5, label="w0"), agrad.Value(-2.0, label="w1")]
    d = agrad.dot(w, [3.0, 4])
    assert d._op == "dot" and d.data == -6.5
    d.backward()
    children = d._children
    assert [c.label for c in children] == ["w0", "", "w1", ""]
    assert [c.data for c in children] == [0.5, 3.0, -2.0, 4]
    assert [c.grad for c in children] == [3.0, 0.5, 4.0, -2.0]
    s = agrad.sum([w[0], 2, w[1]], start=1)
    assert s._op == "sum" and s.data == 1.5
    s.backward()
    assert [c.data for c in s._children] == [0.5, 2, -2.0]
    assert [c.grad for c in s._children] == [1.0, 1.0, 1.0]


def test_fused_nodes_of_plain_numbers_are_plain_numbers():
    assert agrad.sum([1, 2, 3]) == 6
    assert agrad.dot([1.5, 2], [2, 3]) == 9.0


def test_fused_nodes_reject_what_the_chain_would():
    with pytest.raises(TypeError):
        agrad.sum([agrad.Value(1.0), "x"])
    with pytest.raises(ValueError, match="differ in length"):
        agrad.dot([agrad.Value(1.0)], [1.0, 2.0])
    with pytest.raises(OverflowError):
        agrad.sum([agrad.Value(2**62), 2**62])


def test_fused_nodes_match_the_chain_when_terms_share_subexpressions():
    # a term reached again through another term: the fused node must hand out
    # its gradients at the moments the chain of additions would, or a third
    # contribution lands in another order and the rounding differs
    results = []
    for fused in (False, True):
        a, b = agrad.Value(9e15), agrad.Value(0.3)
        c = a * b - a
        terms = [a, c, c * 1e-16, a * a * 1e-30, b]
        pairs = ([a, c, b], [c, 1.5, a])
        if fused:
            out = agrad.sum(terms) + agrad.dot(*pairs)
        else:
            out = sum(terms) + sum(w * x for w, x in zip(*pairs, strict=True))
        out.backward()
        results.append([bits(v) for v in (out.data, a.grad, b.grad, c.grad)])
    assert results[0] == results[1]
