"""Second-order derivatives: ``agrad.grad``, ``agrad.hessian``, ``agrad.hvp``.

``grad(output, inputs)`` is the reverse sweep of ``backward()`` run on the
side: it returns the gradients instead of storing them, so no Value's
``grad`` changes (``Value.grad`` stays a float that belongs to
``backward()``).  With ``create_graph=True`` the sweep is written with Value
operations, so each gradient is a Value whose own graph can be
differentiated again.  The sweeps below are the specification, and run for
``agrad.pure.Value``; for ``agrad.Value`` the engine runs the same sweeps in
C++ (``_core._grad_sweep``, ``cpp/higher.cpp``), making the very Value
operations written here, in the same order: the same bits on both engines,
and a Hessian-vector product costs a few gradients, not a Python loop.

Why the results are exact:

* The sweep visits nodes in the post-order of ``backward()``
  (``agrad.pure.topological_order``), with a fused node's per-term steps
  where the compiled engine places them (``Graph::topological_order`` in
  ``cpp/graph.cpp``), and each local gradient is the formula
  ``agrad.pure`` writes, operation for operation.  A node's gradient is its
  contributions added from 0 in the order they arrive, as ``backward()``
  adds them.
* A gradient added from 0 is never -0.0, so passing one on unchanged (an
  addition's, a sum's term's) equals ``0.0 + g`` bit for bit; only a product
  that arrives first gets the explicit ``0 +``.
* Nodes that lead to no input are skipped: they cannot contribute to the
  gradients asked for (nor raise their errors, as ``backward()`` would).

Where Value operations cannot write the float formula:

* ``log``'s local gradient is ``(1.0 / x) * g`` in ``backward()``; Value has
  no division (``a / b`` is ``a * b**-1``), so with ``create_graph=True`` it
  is ``x**-1 * g``, whose ``pow`` differs from the division in the last bit
  for about one ``x`` in a thousand.  The gradient of a graph with ``log`` is
  then within an ulp of ``backward()``'s per ``log``, and still the same bits
  on both engines.  Without ``create_graph`` it is ``backward()``'s exactly.
* ``relu``'s slope (1 or 0) is a constant of the gradient graph: its second
  derivative is 0, as in PyTorch.  Under ``agrad.compile`` the test behind
  the slope (``out > 0``) is a guard.

A node made by hand (``Value(data, _children, _op)``) has no local gradient:
``backward()`` passes nothing through it and ``grad`` does the same, but with
``create_graph=True`` it is refused (ValueError), since the gradient graph
would silently leave out that path.  A pure node whose ``_backward`` was
replaced is refused either way.

Nothing recurses: graphs of any size work.
"""

from __future__ import annotations

import builtins
import math
import numbers
import types
from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np

from agrad import _core, pure
from agrad._core import RecordingError

__all__ = ["grad", "hessian", "hvp"]

# The kinds of node the sweep knows (_SUM and _DOT: the fused nodes of the
# compiled engine, whose sweeps are cpp/higher.cpp's; agrad.pure has none).
_LEAF, _ADD, _MUL, _POW, _EXP, _LOG, _TANH, _RELU, _SIGMOID, _SUM, _DOT, _CUSTOM, _OWN = range(13)


def _closure_codes() -> dict[types.CodeType, int]:
    """The code of each pure operation's ``_backward`` closure, and its kind:
    a pure node is known by the closure it carries, not by its ``_op`` text."""
    methods = {
        "__add__": _ADD,
        "__mul__": _MUL,
        "__pow__": _POW,
        "exp": _EXP,
        "log": _LOG,
        "tanh": _TANH,
        "relu": _RELU,
        "sigmoid": _SIGMOID,
    }
    codes = {}
    for name, kind in methods.items():
        for const in getattr(pure.Value, name).__code__.co_consts:
            if isinstance(const, types.CodeType) and const.co_name == "_backward":
                codes[const] = kind
    assert len(codes) == len(methods), "agrad.pure's operations changed shape"
    return codes


_PURE_KINDS = _closure_codes()


def _describe(v: Any) -> tuple[int, tuple, Any]:
    """A pure node's kind, children and (for ``**``) exponent."""
    children = v._children
    fn = v._backward
    if fn is pure._no_local_gradient:
        return (_CUSTOM if children else _LEAF), children, None
    code = getattr(fn, "__code__", None)
    kind = _PURE_KINDS.get(code, _OWN) if isinstance(code, types.CodeType) else _OWN
    if kind == _POW:
        cells = dict(zip(fn.__code__.co_freevars, fn.__closure__, strict=True))
        return kind, children, cells["k"].cell_contents
    return kind, children, None


def _walk(root: Any) -> list[tuple]:
    """The nodes in ``backward()``'s post-order: (node, kind, children, k).
    (The compiled engine's fused nodes add a step per term, placed right
    after that term's subtree: ``Graph::topological_order``.)"""
    order: list[tuple] = []
    seen = {id(root)}
    stack: list[list] = [[root, *_describe(root), 0]]  # node, kind, children, k, next child
    while stack:
        top = stack[-1]
        node, kind, children, k, j = top
        descended = False
        while j < len(children):
            c = children[j]
            j += 1
            if id(c) not in seen:
                seen.add(id(c))
                top[4] = j
                stack.append([c, *_describe(c), 0])
                descended = True
                break
        if not descended:
            order.append((node, kind, children, k))
            stack.pop()
    return order


def _engine(output: Any) -> type:
    if isinstance(output, _core.Value):
        return _core.Value
    if isinstance(output, pure.Value):
        return pure.Value
    raise TypeError(f"output must be an agrad Value, not {type(output).__name__!r}")


def _check_inputs(inputs: Any, value_class: type, what: str = "inputs") -> list:
    if isinstance(inputs, (_core.Value, pure.Value)) or not isinstance(inputs, Iterable):
        raise TypeError(f"{what} must be a list of Values, not {type(inputs).__name__!r}")
    inputs = list(inputs)
    for v in inputs:
        if not isinstance(v, value_class):
            engine = "agrad.Value" if value_class is _core.Value else "agrad.pure.Value"
            raise TypeError(
                f"{what} must be Values of the output's engine ({engine}), "
                f"not {type(v).__module__}.{type(v).__name__}"
            )
    return inputs


def _relevant(order: list[tuple], wanted: set[int]) -> set[int]:
    """The nodes that lead to an input (children come first in the order)."""
    relevant: set[int] = set()
    for node, _kind, children, _k in order:
        if id(node) in wanted or any(id(c) in relevant for c in children):
            relevant.add(id(node))
    return relevant


def _refuse(kind: int, node: Any, create_graph: bool) -> None:
    if kind == _OWN:
        raise ValueError(
            f"agrad.grad: {node!r} has a _backward of its own, whose derivative agrad "
            f"cannot know; build it from Value operations instead"
        )
    if kind == _CUSTOM and create_graph:
        raise ValueError(
            f"agrad.grad(create_graph=True): {node!r} (op {node._op!r}) was made by hand "
            f"with Value(data, _children, _op) and has no local gradient, so its path "
            f"cannot be differentiated; build it from Value operations instead"
        )


def _float_sweep(output: Any, inputs: list) -> list[float]:
    """backward()'s sweep in floats, into a dict instead of the nodes' grads:
    pure.py's formulas, through its _fadd and _fmul (their NaN rule)."""
    order = _walk(output)
    relevant = _relevant(order, {id(v) for v in inputs})
    grads: dict[int, float] = {id(output): 1.0}
    get = grads.get
    power, add, mul = pure.power, pure._fadd, pure._fmul
    for node, kind, children, k in reversed(order):
        if id(node) not in relevant or kind in (_LEAF, _CUSTOM):  # custom: no local gradient
            continue
        _refuse(kind, node, False)
        # (0.0 if only hand-made nodes lead here: backward() passes that 0.0 on too)
        g = get(id(node), 0.0)
        a = children[0]
        if kind == _ADD:
            b = children[1]
            if id(a) in relevant:
                grads[id(a)] = add(get(id(a), 0.0), g)
            if id(b) in relevant:
                grads[id(b)] = add(get(id(b), 0.0), g)
            continue
        if kind == _MUL:
            b = children[1]
            if id(a) in relevant:
                grads[id(a)] = add(get(id(a), 0.0), mul(b.data, g))
            if id(b) in relevant:
                grads[id(b)] = add(get(id(b), 0.0), mul(a.data, g))
            continue
        if id(a) not in relevant:
            continue
        if kind == _POW:
            local = mul(k, power(float(a.data), k - 1))
        elif kind == _EXP:
            local = node.data
        elif kind == _LOG:
            local = 1.0 / a.data
        elif kind == _TANH:
            t = float(node.data)
            local = 1.0 - mul(t, t)
        elif kind == _RELU:
            local = 1.0 if node.data > 0 else 0.0
        else:  # _SIGMOID
            s = node.data
            local = mul(s, 1.0 - s)
        grads[id(a)] = add(get(id(a), 0.0), mul(local, g))
    return [get(id(v), 0.0) for v in inputs]


def _graph_sweep(output: Any, inputs: list) -> list:
    """The same sweep with Value operations: each gradient a differentiable Value."""
    order = _walk(output)
    relevant = _relevant(order, {id(v) for v in inputs})
    seed = pure.Value(1.0)
    # per node: its contributions so far, and whether the first is a gradient
    # passed on unchanged (never -0.0, so 0.0 + it is itself)
    arrived: dict[int, list] = {}
    first_safe: dict[int, bool] = {}
    gradient: dict[int, Any] = {id(output): seed}

    def give(child: Any, contribution: Any, safe: bool) -> None:
        key = id(child)
        if key not in relevant:
            return
        if key in arrived:
            arrived[key].append(contribution)
        else:
            arrived[key] = [contribution]
            first_safe[key] = safe

    def settle(node: Any) -> Any:
        key = id(node)
        if key in gradient:  # the output
            return gradient[key]
        parts = arrived.pop(key)
        if len(parts) == 1 and first_safe[key]:
            g = parts[0]
        else:  # 0 + c1 + c2 + ... (the compiled engine: agrad.sum(parts), one node)
            # c1 + 0.0 is a node even when it equals c1: a sum's first term
            # gets its share of the gradient right after its own subtree, as
            # that node does, and before a later term's subtree (which may
            # hold c1) gives it more; without it the second sweep would add
            # c1's contributions in another order
            g = parts[0] + 0.0
            for part in parts[1:]:
                g = g + part
        gradient[key] = g
        return g

    for node, kind, children, k in reversed(order):
        if id(node) not in relevant:
            continue
        g = settle(node)
        if kind == _LEAF:
            continue
        _refuse(kind, node, True)
        a = children[0]
        if kind == _ADD:
            give(a, g, True)
            give(children[1], g, True)
            continue
        if kind == _MUL:
            b = children[1]
            if id(a) in relevant:
                give(a, b * g, False)
            if id(b) in relevant:
                give(b, a * g, False)
            continue
        if id(a) not in relevant:
            continue
        if kind == _POW and k == 2:
            # float(x) ** 1 is float(x) exactly: a product, not a pow to differentiate
            local = a * 2.0
        elif kind == _POW:
            # k * float(x) ** (k - 1) * g: a float exponent makes the power
            # float(x)'s, as the float formula's, even for an int x; a float k
            # keeps the replay on its floats-only path (the same product).  Only
            # a NaN k needs to be the left operand (two NaNs give the left one's)
            p = a ** float(k - 1)
            local = pure.Value(float(k)) * p if k != k else p * float(k)
        elif kind == _EXP:
            local = node
        elif kind == _LOG:
            local = a**-1  # 1.0 / x, as Value writes division (see the module's docstring)
        elif kind == _TANH:
            local = 1.0 - node * node
        elif kind == _RELU:
            local = 1.0 if node > 0 else 0.0  # a guard under agrad.compile
            give(a, g * local, False)
            continue
        else:  # _SIGMOID
            local = node * (1.0 - node)
        give(a, local * g, False)
    zero = None
    out = []
    for v in inputs:
        key = id(v)
        if key in gradient:
            out.append(gradient[key])
        else:  # not in the output's graph
            if zero is None:
                zero = pure.Value(0.0)
            out.append(zero)
    return out


def _sweep(output: Any, inputs: list, create_graph: bool) -> list:
    """The gradients, each engine's way: the compiled engine's sweeps are
    ``_core._grad_sweep``, the same steps and operations as the Python ones."""
    if isinstance(output, _core.Value):
        result = _core._grad_sweep(output, inputs, create_graph)
        if isinstance(result, _core.Value):  # a node made by hand on the way
            _refuse(_CUSTOM, result, True)  # (raises)
        return cast(list, result)
    return _graph_sweep(output, inputs) if create_graph else _float_sweep(output, inputs)


def _refuse_while_recording(output: Any, name: str) -> None:
    """Numbers out of a compiled function are refused; say what to do instead."""
    try:
        output.data  # noqa: B018 - the engine refuses it while recording
    except RecordingError:
        raise RecordingError(
            f"agrad.{name} returns numbers, which a function under agrad.compile cannot "
            f"(a replay would not recompute them); return the Values of "
            f"agrad.grad(output, inputs, create_graph=True) instead "
            f"(for a Hessian, list(agrad.hessian(output, inputs, create_graph=True).flat))"
        ) from None


def grad(output: Any, inputs: Sequence[Any], create_graph: bool = False) -> list:
    """The gradients of ``output`` with respect to each of ``inputs``.

    ``create_graph=False``: a list of floats, the very bits ``backward()``
    would leave in each input's ``grad``.  ``create_graph=True``: a list of
    Values whose graph can be differentiated again (for second derivatives).
    Either way no Value's ``grad`` changes.  An input that ``output`` does
    not depend on gets 0.0 (a constant Value with ``create_graph``); inputs
    may be interior nodes of the graph.  Works on ``agrad.Value`` and
    ``agrad.pure.Value`` (the same bits), and, with ``create_graph=True``,
    inside ``agrad.compile`` (a replay recomputes the gradients).

    >>> import agrad
    >>> x, y = agrad.Value(3.0), agrad.Value(2.0)
    >>> f = x * x * y
    >>> agrad.grad(f, [x, y])
    [12.0, 9.0]
    >>> dx, dy = agrad.grad(f, [x, y], create_graph=True)
    >>> agrad.grad(dx, [x, y])          # d/dx and d/dy of 2xy
    [4.0, 6.0]
    >>> x.grad                          # untouched
    0.0
    """
    inputs = _check_inputs(inputs, _engine(output))
    if type(create_graph) is not bool:
        raise TypeError(f"create_graph must be a bool, not {type(create_graph).__name__!r}")
    if not create_graph:
        _refuse_while_recording(output, "grad(create_graph=False)")
    return _sweep(output, inputs, create_graph)


def hessian(output: Any, inputs: Sequence[Any], create_graph: bool = False) -> np.ndarray:
    """The Hessian of ``output`` with respect to ``inputs``: an n x n float64
    array whose row i is the gradient of d output / d input_i.

    ``create_graph=True`` gives an n x n array of Values instead (dtype
    object), each differentiable again; under ``agrad.compile`` return
    ``list(agrad.hessian(..., create_graph=True).flat)``, and each replay
    recomputes the Hessian.

    >>> import agrad
    >>> x, y = agrad.Value(3.0), agrad.Value(2.0)
    >>> h = agrad.hessian(x * x * y + y.exp(), [x, y])
    >>> h.shape, h.dtype
    ((2, 2), dtype('float64'))
    >>> h.tolist()
    [[4.0, 6.0], [6.0, 7.38905609893065]]
    """
    inputs = _check_inputs(inputs, _engine(output))
    if type(create_graph) is not bool:
        raise TypeError(f"create_graph must be a bool, not {type(create_graph).__name__!r}")
    if not create_graph:
        _refuse_while_recording(output, "hessian")
    first = _sweep(output, inputs, True)
    n = len(inputs)
    if create_graph:
        entries = np.empty((n, n), dtype=object)
        for i, g in enumerate(first):
            entries[i, :] = _sweep(g, inputs, True)
        return entries
    h = np.zeros((n, n), dtype=np.float64)
    for i, g in enumerate(first):
        h[i, :] = _sweep(g, inputs, False)
    return h


def _check_vector(vector: Any, n: int) -> list[float]:
    if isinstance(vector, (_core.Value, pure.Value, str, bytes)) or not isinstance(
        vector, Iterable
    ):
        raise TypeError(f"vector must be a sequence of numbers, not {type(vector).__name__!r}")
    items = list(vector.ravel()) if isinstance(vector, np.ndarray) else list(vector)
    if len(items) != n:
        raise ValueError(f"vector has {len(items)} entries for {n} inputs")
    out = []
    for x in items:
        if isinstance(x, bool) or not isinstance(x, numbers.Real):
            raise TypeError(f"vector must hold real numbers, not {type(x).__name__!r}")
        x = float(x)
        if not math.isfinite(x):
            raise ValueError(f"vector must be finite, not {x!r}")
        out.append(x)
    return out


def hvp(output: Any, inputs: Sequence[Any], vector: Sequence[float]) -> list[float]:
    """The Hessian of ``output`` times ``vector``, without forming the Hessian:
    the gradient of ``sum_i g_i * vector_i``, where ``g`` is the gradient of
    ``output`` (one sweep to build ``g``, one to differentiate it).  A list of floats.

    >>> import agrad
    >>> x, y = agrad.Value(3.0), agrad.Value(2.0)
    >>> agrad.hvp(x * x * y, [x, y], [1.0, 0.0])    # the Hessian's first column
    [4.0, 6.0]
    """
    value_class = _engine(output)
    inputs = _check_inputs(inputs, value_class)
    v = _check_vector(vector, len(inputs))
    _refuse_while_recording(output, "hvp")
    g = _sweep(output, inputs, True)
    if value_class is _core.Value:
        directional = _core.dot(g, v)
    else:  # the chain agrad.dot stands for: 0 + g0*v0 + g1*v1 + ...
        directional = builtins.sum(gi * vi for gi, vi in zip(g, v, strict=True))
    if not isinstance(directional, value_class):  # no inputs: a plain 0
        return []
    return _sweep(directional, inputs, False)
