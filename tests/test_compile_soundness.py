"""agrad.compile never replays a stale graph: every decision the recording made
is part of the key, a guard checked at every call, or refused.

Each class of stale replay has its own tests here: reads and writes of a
Value's numbers by any path while recording, branches on comparisons,
exceptions used as control flow, flags as arguments, numbers read from a
closure or a global, methods.  A property test then runs generated programs
mixing all of them, compiled and plain, on a sequence of inputs that flips
their branches back and forth, and requires the same bits or the same error.
"""

import contextlib
import copy
import enum
import gc
import math
import pickle
import weakref

import numpy as np
import pytest
from engines import exact
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agrad
from agrad import Value, nn, optim


def outcome(thunk):
    """The result's bits, or the error's type and words."""
    try:
        return ("ok", thunk())
    except (ArithmeticError, ValueError) as error:
        return ("raised", type(error), str(error))


# -- 1. every way to read or write a Value's numbers while recording is refused
W = Value(1.5, label="w")

READS_AND_WRITES = {
    "data read": lambda v: v.data,
    "data write": lambda v: setattr(v, "data", 2.0),
    "grad read": lambda v: v.grad,
    "grad write": lambda v: setattr(v, "grad", 1.0),
    "parameter read": lambda v: W.data,
    "parameter grad read": lambda v: W.grad,
    "repr": repr,
    "str": str,
    "f-string": lambda v: f"{v}",
    "format": lambda v: format(v, ""),
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "pickle": pickle.dumps,
    "backward": lambda v: v.backward(),
    "draw_dot": agrad.draw_dot,
    "SGD step": lambda v: optim.SGD([W], lr=0.1).step(),
    "SGD step, momentum": lambda v: optim.SGD([W], lr=0.1, momentum=0.9).step(),
    "Adam step": lambda v: optim.Adam([W], lr=0.1).step(),
    "zero_grad": lambda v: optim.SGD([W], lr=0.1).zero_grad(),
    "list of data": lambda v: [u.data for u in (v, W)],
}


@pytest.mark.parametrize("access", READS_AND_WRITES.values(), ids=READS_AND_WRITES.keys())
def test_every_read_or_write_of_numbers_while_recording_is_refused(access):
    def fn(x):
        y = x * W
        access(y)  # the line the error must name
        return y

    # the innermost line of user code: the lambda's own, or fn's where a builtin,
    # the standard library or agrad itself (draw_dot, an optimizer) did the reading
    code = getattr(access, "__code__", None)
    ours = code is not None and code.co_filename == __file__
    line = code.co_firstlineno if ours else fn.__code__.co_firstlineno + 2
    f = agrad.compile(fn)
    live = agrad._core._live_nodes()
    before = exact(W.data), exact(W.grad)
    with pytest.raises(agrad.RecordingError) as info:
        f(2.0)
    message, error_type = str(info.value), info.type
    del info  # its traceback's frames hold the recording's Values
    gc.collect()
    assert f"test_compile_soundness.py:{line}" in message, message
    assert "while being recorded" in message
    assert issubclass(error_type, RuntimeError)
    assert f.recordings == 0
    assert agrad._core._live_nodes() == live  # the aborted recording let its nodes go
    assert (exact(W.data), exact(W.grad)) == before  # nothing was written
    # outside a recording the same access works as ever
    y = Value(2.0) * W
    access(y)


@pytest.mark.parametrize("momentum", [0.0, 0.9], ids=["plain, one call", "momentum, arrays"])
def test_an_optimizer_step_while_recording_is_refused_as_a_read(momentum):
    """A step reads the parameters first, whichever way it computes (plain
    SGD on the compiled engine is one call that reads and writes): the
    refusal names the read, and nothing moved."""
    opt = optim.SGD([W], lr=0.1, momentum=momentum)
    before = exact(W.data)

    def fn(x):
        y = x * W
        opt.step()
        return y

    with pytest.raises(agrad.RecordingError, match="read parameters' data or gradients in bulk"):
        agrad.compile(fn)(2.0)
    assert exact(W.data) == before


def test_a_refusal_the_function_catches_is_raised_again():
    def fn(x):
        y = x * 2
        with contextlib.suppress(RuntimeError):
            print(y)
        return y

    with pytest.raises(agrad.RecordingError, match="printed a Value"):
        agrad.compile(fn)(1.0)


def test_data_read_message_shows_the_comparison_to_write():
    f = agrad.compile(lambda x: x * 2 if x.data > 0 else x)
    with pytest.raises(agrad.RecordingError, match=r"`if v > 0:` rather than `if v\.data > 0:`"):
        f(1.0)


def test_a_compiled_training_step_is_refused_not_frozen():
    # an optimizer inside the compiled function would train once and never again
    w = Value(0.0)
    opt = optim.SGD([w], lr=0.1)

    @agrad.compile
    def step(x, y):
        loss = (w * x - y) ** 2
        loss.backward()
        opt.step()
        return loss

    with pytest.raises(agrad.RecordingError, match=r"called backward\(\)"):
        step(1.0, 2.0)
    assert exact(w.data) == exact(0.0)


# -- 2. comparisons: plain bools eagerly, guards under compile
@pytest.mark.parametrize("engine", [agrad.Value, agrad.pure.Value], ids=["native", "pure"])
def test_comparisons_order_data_as_python_numbers(engine):
    cases = [(2, 3), (2.5, 2.5), (float("nan"), 1), (2**53 + 1, 2.0**53), (-0.0, 0.0), (1, 1.0)]
    for a, b in cases:
        for op in ("<", "<=", ">", ">="):
            want = eval(f"a {op} b")
            for got in (
                eval(f"engine(a) {op} engine(b)"),
                eval(f"engine(a) {op} b"),
                eval(f"a {op} engine(b)"),
            ):
                assert type(got) is bool and got == want, (a, op, b)
    v = engine(1.0)
    assert v == v and v != engine(1.0) and len({v, engine(1.0)}) == 2  # identity
    assert max(engine(1.0), engine(3.0), key=lambda u: u).__class__ is engine
    with pytest.raises(TypeError):
        _ = engine(1.0) < "a"


def relu_like(x, w):
    h = x * w
    if h > 0:
        return h * h
    return h * 0.01


def clipped(x, w):
    y = x * w
    if y > 2.0:
        y = y * 0 + 2.0
    elif y < -2.0:
        y = y * 0 - 2.0
    return y.tanh()


def max_margin(xs, w):
    scores = [x * w for x in xs]
    best = max(scores)  # comparisons in the builtin
    return best + sum(scores)


def run_and_differentiate(fn, args, params):
    """fn(*args)'s bits and the parameters' gradients, or the error."""

    def run():
        result = fn(*args)
        result.backward()
        return exact(result.data), [exact(p.grad) for p in params]

    return outcome(run)


def check_against_eager(fn, inputs, params):
    """Compiled and eager agree, call after call (eager given the numbers as Values,
    as the recording gives them)."""
    f = agrad.compile(fn)
    for args in inputs:
        got = run_and_differentiate(f, args, params)
        assert got == run_and_differentiate(fn, as_values(args), params), args
    return f


def as_values(obj):
    if type(obj) in (list, tuple):
        return type(obj)(as_values(o) for o in obj)
    if isinstance(obj, float | int) and not isinstance(obj, bool | enum.Enum):
        return Value(obj)
    return obj


def test_branches_on_comparisons_replay_correctly():
    w = Value(0.5)
    xs = [1.0, -2.0, 3.0, -4.0, 5.0, 6.0, -7.0, 8.0]
    f = check_against_eager(lambda x: relu_like(x, w), [(x,) for x in xs], [w])
    assert f.recordings == 2  # one program per outcome, both kept
    f = check_against_eager(
        lambda x: clipped(x, w), [(x,) for x in [1.0, 9.0, -9.0, 0.5, 9.5]], [w]
    )
    assert f.recordings == 3
    batches = [([1.0, 2.0, 3.0],), ([3.0, 2.0, 1.0],), ([1.0, 2.0, 3.0],), ([-1.0, -5.0, 2.0],)]
    check_against_eager(lambda xs: max_margin(xs, w), batches, [w])


def test_guards_read_parameters_at_every_call():
    w = Value(1.0)
    f = agrad.compile(lambda x: relu_like(x, w))
    assert exact(f(2.0).data) == exact(4.0)
    w.data = -1.0  # the same input now takes the other branch
    assert exact(f(2.0).data) == exact(-0.02)


def test_a_flipped_guard_before_a_failing_operation_is_a_new_branch_not_an_error():
    f = agrad.compile(lambda x: x.log() if x > 0 else x * 2)
    assert exact(f(math.e).data) == exact(1.0)
    assert exact(f(-3.0).data) == exact(-6.0)  # replaying log(-3) would raise
    assert exact(f(-0.0).data) == exact(-0.0)
    with pytest.raises(ValueError, match="math domain error"):  # eager raises too: log(0)
        agrad.compile(lambda x: x.log() if x >= 0 else x)(0.0)


def test_max_programs_bounds_the_patterns_kept():
    w = Value(1.0)

    def fn(xs):
        return agrad.sum([x * w if x > 0 else x * 2 for x in xs])

    f = agrad.compile(fn, max_programs=3)
    patterns = [[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]
    check_against_eager(fn, [(p,) for p in patterns * 2], [w])
    for p in patterns:
        f(p)
        assert f.recordings <= 3


# -- 3. an exception used as control flow: that call ran eagerly, nothing kept
def test_an_operation_that_raised_while_recording_is_never_replayed():
    def fn(x):
        try:
            return x.log()
        except ValueError:
            return x * 0

    f = check_against_eager(fn, [(-1.0,), (2.0,), (3.0,), (-5.0,), (0.0,), (7.0,)], [])
    assert f.recordings == 1  # the log branch, recorded on a call where log succeeded

    def overflow_guarded(x):
        try:
            return x.exp()
        except OverflowError:
            return x * 1e300

    check_against_eager(overflow_guarded, [(1000.0,), (1.0,), (2000.0,)], [])


# -- 4. arguments that are not numbers select the program
class Mode(enum.Enum):
    L1 = 1
    L2 = 2


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 2


def test_flags_modes_and_strings_select_the_program():
    w = Value(2.0)

    def fn(x, regularize, mode, name=None, size=Size.SMALL):
        y = x * w
        if regularize:
            y = y + w * w
        if mode == Mode.L1:
            y = y * 3
        if name == "double":
            y = y * 2
        if size is Size.LARGE:
            y = y * 10
        return y

    inputs = [
        (1.0, True, Mode.L1),
        (1.0, False, Mode.L1),
        (1.0, True, Mode.L2),
        (1.0, False, Mode.L2),
        (2.0, True, Mode.L1),
    ]
    f = check_against_eager(fn, inputs, [w])
    assert f.recordings == 4
    assert exact(f(1.0, False, Mode.L2, name="double").data) == exact(4.0)
    assert exact(f(1.0, False, Mode.L2, size=Size.LARGE).data) == exact(20.0)
    # 0 is a number, so an input Value: deciding on its truth is refused, not frozen
    with pytest.raises(agrad.RecordingError, match="as a truth value"):
        f(1.0, 0, Mode.L2)
    g = agrad.compile(lambda x, mode: x * 2 if mode == 1 else x * 3)
    with pytest.raises(agrad.RecordingError, match="with == or !="):
        g(1.0, 1)
    assert exact(g(1.0, "one").data) == exact(3.0)  # == against a str is no trap


def test_labels_passed_as_arguments_to_nn_losses():
    scores = [0.5, -1.0, 2.0]
    labels = [1, -1, -1]
    hinge = agrad.compile(lambda s, y: nn.hinge_loss(s, y))
    assert exact(hinge(scores, labels).data) == exact(
        nn.hinge_loss([Value(s) for s in scores], labels).data
    )
    bce = agrad.compile(lambda z, y: nn.binary_cross_entropy(z, y))
    for ys in ([1, 0, 0], [0, 1, 1], [1, 0, 0]):
        assert exact(bce(scores, ys).data) == exact(
            nn.binary_cross_entropy([Value(s) for s in scores], ys).data
        )
    with pytest.raises(ValueError, match="labels 0 and 1"):
        bce(scores, [1, 0, 2])


COEFFICIENT = 0.5


def test_numbers_read_from_a_closure_or_a_global_are_part_of_the_key():
    global COEFFICIENT
    w = Value(1.0)
    scale = 2.0

    def fn(x):
        return x * w * scale + x * COEFFICIENT

    f = agrad.compile(fn)
    assert exact(f(1.0).data) == exact(2.5)
    scale = 3.0  # the closure's cell changes
    assert exact(f(1.0).data) == exact(3.5)
    COEFFICIENT = 0.25
    try:
        assert exact(f(1.0).data) == exact(3.25)
        assert f.recordings == 3
        scale = 2.0
        COEFFICIENT = 0.5
        assert exact(f(1.0).data) == exact(2.5)  # an earlier program, kept
        assert f.recordings == 3
    finally:
        COEFFICIENT = 0.5


def test_the_globals_a_function_loads_are_read_as_dis_reads_them():
    """compiled._loaded_globals reads the bytecode itself, for speed: it must
    find exactly the LOAD_GLOBAL and LOAD_NAME names that dis does, in code
    with nested functions, comprehensions, methods, attributes named like
    globals, and more than 256 names (EXTENDED_ARG)."""
    import dis
    import types

    from agrad.compiled import _loaded_globals

    many = "\n".join(f"    t = t + g{i} * x.a{i}" for i in range(300))
    source = (
        f"def big(x):\n    t = 0\n{many}\n    return t + len([y for y in x]) + COEFFICIENT\n"
        "def nested(x):\n    f = lambda y: y * COEFFICIENT\n    return [f(v) for v in x]\n"
        "class C:\n    k = COEFFICIENT\n    def m(self):\n        return self.COEFFICIENT\n"
    )
    module = compile(source, "<generated>", "exec")
    codes, stack = [], [module]
    while stack:
        c = stack.pop()
        codes.append(c)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    assert len(codes) >= 6
    for code in codes:
        by_dis = {
            i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")
        }
        assert _loaded_globals(code) == by_dis, code.co_name
    assert any(len(c.co_names) > 256 for c in codes)


def test_a_function_whose_globals_hold_values_watches_no_name():
    """The bytecode of a function (here of thousands of lines) is read only
    where a name in it could be a watched global, and what it finds is as
    before: the globals holding numbers or nothing yet, not Values."""
    lines = "\n".join(f"    s = s + x * w{i % 7}" for i in range(3000))
    namespace = {f"w{i}": Value(0.5 + i) for i in range(7)}
    exec(f"def long(x):\n    s = x\n{lines}\n    return s\n", namespace)
    long = namespace["long"]
    free = agrad.compiled._FreeNumbers(long)
    assert free.names == () and not free.watched  # the w's hold Values: not watched
    namespace["RATE"] = 0.5
    exec("def rated(x):\n    return x * RATE + x * undefined_yet\n", namespace)
    assert agrad.compiled._FreeNumbers(namespace["rated"]).names == ("RATE", "undefined_yet")


# -- 5. methods, agrad.sum's start
class Model:
    def __init__(self, w):
        self.w = Value(w)

    @agrad.compile
    def loss(self, x):
        return (self.w * x) ** 2


def test_compile_on_a_method_keeps_programs_per_instance():
    a, b = Model(1.0), Model(3.0)
    assert exact(a.loss(2.0).data) == exact(4.0)
    assert exact(b.loss(2.0).data) == exact(36.0)
    assert exact(a.loss(3.0).data) == exact(9.0)
    assert a.loss is a.loss and a.loss is not b.loss
    assert a.loss.recordings == 1 and Model.loss.recordings == 0
    gone = weakref.ref(b)
    del b
    gc.collect()
    assert gone() is None  # the per-instance programs do not keep the model alive


def test_compile_on_a_method_of_an_unweakrefable_class_says_why():
    class Slotted:
        __slots__ = ("w",)

        @agrad.compile
        def f(self, x):
            return x * 2

    with pytest.raises(TypeError, match="weakly referenced"):
        Slotted().f(1.0)


def test_sum_with_a_value_start_says_what_to_write():
    with pytest.raises(TypeError, match=r"agrad\.sum\(\[start, \*values\]\)"):
        agrad.sum([Value(1.0)], Value(2.0))


# -- the property: generated programs with every kind of decision
STEP = st.tuples(
    st.sampled_from(
        [
            "add",
            "mul",
            "sub",
            "div",
            "square",
            "tanh",
            "relu",
            "branch",
            "try_log",
            "flag",
            "closure",
        ]
    ),
    st.integers(0, 50),
    st.integers(0, 50),
    st.sampled_from([0.5, -1.0, 2.0, 3, 0]),
)
NUMBER = st.one_of(
    st.floats(-20, 20, allow_nan=False, width=64),
    st.integers(-5, 5),
    st.sampled_from([0.0, -0.0, 1e300, -1e300]),
)


def build_program(steps, cell):
    w = Value(0.75, label="w")

    def fn(x, y, flag):
        vals = [x, y, w]
        for kind, i, j, c in steps:
            a, b = vals[i % len(vals)], vals[j % len(vals)]
            if kind == "add":
                v = a + b
            elif kind == "mul":
                v = a * b
            elif kind == "sub":
                v = a - c
            elif kind == "div":
                v = a / b
            elif kind == "square":
                v = a**2
            elif kind == "tanh":
                v = a.tanh()
            elif kind == "relu":
                v = a.relu()
            elif kind == "branch":
                v = a * c if a > b else b + c
            elif kind == "try_log":
                try:
                    v = a.log()
                except ValueError:
                    v = a * 0.5
            elif kind == "flag":
                v = a * 2 if flag else a + 1
            else:
                v = a * cell[0]  # a number read through a closure cell, rebound below
            vals.append(v)
        return vals[-1] + vals[-2]

    return fn, w


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(STEP, min_size=1, max_size=10),
    calls=st.lists(
        st.tuples(NUMBER, NUMBER, st.booleans(), st.sampled_from([1.0, -2.0])),
        min_size=2,
        max_size=8,
    ),
)
def test_generated_programs_replay_as_eager_or_raise_the_same(steps, calls):
    coefficient = [1.0]
    scale = 1.0

    def with_closure(x, y, flag):
        return fn(x, y, flag) * scale

    fn, w = build_program(steps, coefficient)
    f = agrad.compile(with_closure)
    for x, y, flag, c in calls:
        scale = c  # a closure number that changes between calls
        got = run_and_differentiate(f, (x, y, flag), [w])
        eager = run_and_differentiate(with_closure, (Value(x), Value(y), flag), [w])
        assert got == eager, (x, y, flag, c)


def test_numpy_bools_and_arrays_of_numbers_still_work():
    f = agrad.compile(lambda xs, flag: agrad.sum(list(xs)) * (2 if flag else 3))
    assert exact(f(np.array([1.0, 2.0]), np.True_).data) == exact(6.0)
    assert exact(f(np.array([1.0, 2.0]), np.False_).data) == exact(9.0)
