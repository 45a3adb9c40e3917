"""README's contract for Value, on both engines.

Construction and the graph it builds, Python's number rules, gradients,
errors (and that an error leaves nothing half-done), the chapter's own code,
and saving and restoring.  Most tests take the ``Value`` fixture and run once
on each engine; those that compare what the two engines say loop over both.
"""

import copy
import math
import pickle
import random

import pytest
from chapter import BOOK_TRAIN_LINES, book_points
from engines import ENGINES, OPS, exact, outcome

import agrad
import agrad.pure
from agrad import _core
from agrad.linreg import LinReg, train

# -- construction, data, grad and label --------------------------------------------


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


def test_label_must_be_a_str(Value):
    v = Value(1.0, label="w")
    with pytest.raises(TypeError):
        v.label = 3
    assert v.label == "w"


# -- the graph: composition, constants, fused nodes ----------------------------------


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


# -- gradients and backward() --------------------------------------------------------


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


# -- errors: Python's own, and nothing half-done --------------------------------------

ERRORS = [
    pytest.param(lambda V: V(10.0) ** 400, OverflowError, id="10.0 ** 400"),
    pytest.param(lambda V: V(1000).exp(), OverflowError, id="exp(1000)"),
    pytest.param(lambda V: V(1000.0).exp(), OverflowError, id="exp(1000.0)"),
    pytest.param(lambda V: V(1.0) / 0, ZeroDivisionError, id="1.0 / 0"),
    pytest.param(lambda V: 1 / V(0), ZeroDivisionError, id="1 / V(0)"),
    pytest.param(lambda V: V(0.0) ** -1, ZeroDivisionError, id="0.0 ** -1"),
    pytest.param(lambda V: V(0).log(), ValueError, id="log(0)"),
    pytest.param(lambda V: V(0.0).log(), ValueError, id="log(0.0)"),
    pytest.param(lambda V: V(-1.0).log(), ValueError, id="log(-1.0)"),
    pytest.param(lambda V: V(-8.0) ** 0.5, ValueError, id="-8.0 ** 0.5"),
    pytest.param(lambda V: V(-(2**63)) ** 709.78, ValueError, id="-2**63 ** 709.78"),
    pytest.param(lambda V: -V(-(2**63)), OverflowError, id="-(-2**63)"),
    pytest.param(lambda V: V(2**62) + 2**62, OverflowError, id="2**62 + 2**62"),
    pytest.param(lambda V: V(2**62) * 4, OverflowError, id="2**62 * 4"),
    pytest.param(lambda V: V(3) ** 64, OverflowError, id="3 ** 64"),
    pytest.param(lambda V: V(2**63), OverflowError, id="V(2**63)"),
    pytest.param(lambda V: V(None), TypeError, id="V(None)"),
    pytest.param(lambda V: V("1"), TypeError, id="V('1')"),
    pytest.param(lambda V: V([1.0]), TypeError, id="V([1.0])"),
    pytest.param(lambda V: V(1j), TypeError, id="V(1j)"),
    pytest.param(lambda V: V(1.0, label=3), TypeError, id="label=3"),
    pytest.param(lambda V: V(1.0, _children=[1.0]), TypeError, id="_children=[1.0]"),
    pytest.param(lambda V: V(1.0) ** V(2.0), TypeError, id="V ** V"),
    pytest.param(lambda V: 2 ** V(2.0), TypeError, id="2 ** V"),
    pytest.param(lambda V: pow(V(2), 3, 5), TypeError, id="pow(V, 3, 5)"),
    pytest.param(lambda V: V(1.0) + "a", TypeError, id="V + 'a'"),
    pytest.param(lambda V: V(1.0) * None, TypeError, id="V * None"),
]


@pytest.mark.parametrize("make, error", ERRORS)
def test_errors_are_pythons_own(make, error):
    """Each engine raises exactly the exception Python would, and both say the same."""
    native, pure = (outcome(lambda V=V: make(V)) for V in ENGINES)
    assert native[:2] == ("raised", error)
    assert native == pure


def test_children_must_be_iterable(Value):
    # the one error whose message is each engine's own argument parsing
    with pytest.raises(TypeError, match="iterable"):
        Value(1.0, _children=3)


def test_the_messages_are_pythons_for_the_same_float_arithmetic(Value):
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
        with pytest.raises((ArithmeticError, ValueError)) as got:
            make(Value)
        assert str(got.value) == want


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
        assert exact(make(Value(x)).data) == exact(plain(x))


def test_a_nan_keeps_its_sign_through_negation(Value):
    """-v is v * -1, and a multiply keeps the sign of its one nan operand.

    The compiler used to fold x * -1.0 into -x, which flips it.
    """
    for x in (math.nan, -math.nan):
        assert math.copysign(1.0, (-Value(x)).data) == math.copysign(1.0, x * -1)
        assert math.copysign(1.0, (Value(x) - 1.0).data) == math.copysign(1.0, x + -1.0)


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


# -- the chapter's own code, pasted, on each engine ----------------------------------


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


def test_too_large_a_learning_rate_overflows_as_the_book_warns(Value):
    # the engine itself raises: the chapter's train() has no check of its own
    LinReg, train = chapter_classes(Value)
    xs, ys = book_points()
    with pytest.raises(OverflowError):
        train(LinReg(), xs, ys, learning_rate=1.0, n_epochs=500)


def test_both_engines_train_to_the_same_bits():
    runs = []
    for V in ENGINES:
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
            losses.append(exact(loss.data))
        runs.append((losses, exact(model.w.data), exact(model.b.data)))
    assert runs[0] == runs[1]


# -- save and restore ----------------------------------------------------------------


@pytest.mark.parametrize("data", [3, -(2**63), 2.5, -0.0, math.inf, math.nan, 1e-320])
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
    assert (exact(r.data), r.grad, r.label, r._op, r._prev) == (
        exact(data),
        -1.25,
        "w₀",
        "",
        set(),
    )
    r.data = 1.0  # independent of the original
    assert exact(v.data) == exact(data)


def test_an_interior_value_pickles_as_a_leaf(Value):
    a = Value(2.0)
    y = a * 3.0
    y.backward()
    r = pickle.loads(pickle.dumps(y))
    assert (r.data, r.grad, r._prev) == (6.0, 1.0, set())


def test_a_trained_linreg_round_trips(Value):
    xs, ys = book_points(40)
    X = [[x, x / 2, 1 - x] for x in xs]  # any three inputs will do
    random.seed(5)
    model = LinReg(n_inputs=3, feature_names=["a", "b", "c"], value_class=Value)
    train(model, X, ys, n_epochs=200, learning_rate=0.01, log_every=None)

    def state(m):
        return [(exact(p.data), exact(p.grad), p.label) for p in m.parameters()]

    saved = state(model)
    for restored in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert repr(restored) == repr(model)
        assert state(restored) == saved
        assert all(type(p) is Value for p in restored.parameters())
        assert exact(restored(X[0]).data) == exact(model(X[0]).data)
        # it trains on, independently of the original, to the same bits
        twin = copy.deepcopy(model)
        train(restored, X, ys, n_epochs=5, learning_rate=0.01, log_every=None)
        train(twin, X, ys, n_epochs=5, learning_rate=0.01, log_every=None)
        assert state(restored) == state(twin)
        assert state(model) == saved


def test_division_and_subtraction_are_composed_as_the_book_composes_them(Value):
    # a / b is a * b**-1: the intermediate 1e-310 ** -1 overflows, though
    # float division would not; README's contract says so.
    assert pytest.approx(1e10) == 1e-300 / 1e-310
    with pytest.raises(OverflowError):
        Value(1e-300) / 1e-310
    with pytest.raises(OverflowError):
        Value(1e-300) / Value(1e-310)
    # x ** 0's gradient is 0 * x ** -1, which divides by zero at x = 0
    with pytest.raises(ZeroDivisionError):
        (Value(0.0) ** 0).backward()
