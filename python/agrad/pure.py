"""The pure-Python engine: the reference every other engine must match bit for bit.

It is micrograd's ``Value`` with the contract in the README made exact:

* Numbers are Python's: ``data`` is an ``int`` or a ``float`` and follows
  Python's rules (int op int stays int for ``+ - *`` and non-negative int
  powers).  agrad's ints are 64-bit, so the compiled engine can hold them
  exactly; an int outside that range raises ``OverflowError``.
* Gradients are always floats, and every local gradient is computed in float
  arithmetic, in the order written below: the compiled engine performs the
  very same IEEE operations in the same order, so both give identical bits.
* Children are kept in a tuple (``_children``) because the order in which a
  node's gradient contributions are summed must not depend on set iteration
  order; ``_prev`` is the set view of them that the book's ``draw_dot`` uses.
* Nothing recurses: the topological order is built with an explicit stack.
* A node's ``_backward`` takes the node as its argument instead of closing
  over it: a closure over ``out`` stored on ``out`` is a reference cycle, and
  then every dropped graph waits for the garbage collector.

Each op states its forward value and its local gradient side by side.
"""

from __future__ import annotations

import math
import numbers
import operator

__all__ = ["Value", "topological_order"]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def _check_int(n: int) -> int:
    if not INT64_MIN <= n <= INT64_MAX:
        raise OverflowError("integer result out of agrad's 64-bit range; use a float")
    return n


def as_number(x: object) -> int | float:
    """Return ``x`` as a plain int or float, or raise TypeError.

    bool and integer types with ``__index__`` (numpy's ints) become int, other
    real numbers (numpy's floats, Fraction) become float.  A subclass of int
    or float stands for its own value, whatever its ``__index__`` or
    ``__float__`` say, as in Python's ``math`` functions.
    """
    n = _number_or_none(x)
    if n is None:
        raise TypeError(f"a Value holds a real number, not {type(x).__name__!r}")
    return n


def _number_or_none(x: object) -> int | float | None:
    """as_number, but None for what is not a real number.  An error raised
    while converting a real number (a broken ``__float__``) propagates: an
    operator must not take it for "not a number" and try the other operand."""
    if type(x) is float:
        return x
    if isinstance(x, float):
        return float.__float__(x)
    if type(x) is int:
        return _check_int(x)
    if isinstance(x, numbers.Integral):
        return _check_int(operator.index(x))
    if isinstance(x, numbers.Real):
        return float(x)
    return None


def _as_grad(x: object) -> float:
    return float(as_number(x))


def _is_odd_integer(x: float) -> bool:
    return math.fmod(abs(x), 2.0) == 1.0


def power(base: int | float, exponent: int | float) -> int | float:
    """``base ** exponent`` as Python computes it, but a negative base with a
    fractional exponent is a ValueError (Python would return a complex)."""
    if type(base) is int and type(exponent) is int and exponent >= 0:
        if abs(base) > 1 and exponent >= 64:  # would not fit: say so before computing it
            _check_int(2**64)
        return _check_int(base**exponent)
    base = float(base)
    fractional = math.isfinite(exponent) and exponent != math.floor(exponent)
    if fractional and base < 0 and math.isfinite(base):
        # said before computing: Python's complex power would overflow for some
        raise ValueError("negative number cannot be raised to a fractional power")
    return base**exponent


# Every float + and * below goes through _fadd and _fmul, for the NaN they
# give.  When both operands are NaN, the hardware returns one of them, and
# which one depends on the order the C compiler put the operands in: CPython's
# own `a + b` gives one NaN before the interpreter specialises the instruction
# and the other after.  So agrad fixes it, in every engine: two NaNs give the
# left operand's NaN, quieted (bit 51 set); one NaN or none, the hardware's
# result, which does not depend on the order.  `a + 0.0` quiets a's NaN with
# a single NaN operand, so it is the same on every path.
def _fadd(a: float, b: float) -> float:
    r = a + b
    if r != r and a != a:
        r = a + 0.0
    return r


def _fmul(a: float, b: float) -> float:
    r = a * b
    if r != r and a != a:
        r = a + 0.0
    return r


def _add(a: int | float, b: int | float) -> int | float:
    r = a + b
    if type(r) is int:
        return _check_int(r)
    if r != r and a != a:  # _fadd's rule
        r = a + 0.0
    return r


def _mul(a: int | float, b: int | float) -> int | float:
    r = a * b
    if type(r) is int:
        return _check_int(r)
    if r != r and a != a:  # _fmul's rule
        r = a + 0.0
    return r


def _neg(a: int | float) -> int | float:
    return _check_int(-a) if type(a) is int else -a


class Value:
    """A scalar that remembers how it was computed, so it can be differentiated.

    >>> from agrad.pure import Value
    >>> x = Value(3.0, label='x')
    >>> y = x * x + 1
    >>> y.backward()
    >>> y, x.grad
    (Value(: 10.0), 6.0)
    """

    __slots__ = ("__weakref__", "_backward", "_children", "_data", "_grad", "_label", "_op")
    # numpy must hand `np.float64(2) * v` back to Value.__rmul__, not make an array.
    __array_ufunc__ = None

    def __init__(self, data, _children=(), _op="", label=""):
        self._refuse_if_made()
        data = as_number(data)
        label = _check_str(label, "label")
        op = _check_str(_op, "_op")
        children = _check_children(_children)
        self._refuse_if_made()  # the conversions above may have run code that made it
        self._data = data
        self._grad = 0.0
        self._label = label
        self._children = children
        self._op = op
        self._backward = _no_local_gradient

    def _refuse_if_made(self):
        try:
            self._data  # noqa: B018 - a slot that only a first __init__ sets
        except AttributeError:
            return
        raise TypeError(_ALREADY_MADE)

    # -- data and grad are checked on the way in, so a Value never holds a non-number
    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        self._data = as_number(value)

    @property
    def grad(self) -> float:
        return self._grad

    @grad.setter
    def grad(self, value):
        self._grad = _as_grad(value)

    @property
    def label(self) -> str:
        return self._label

    @label.setter
    def label(self, value):
        self._label = _check_str(value, "label")

    @property
    def _prev(self) -> set[Value]:
        return set(self._children)

    # -- operators, composed as the book composes them
    def __add__(self, other):
        other = _operand(other)
        if other is NotImplemented:
            return other
        out = Value(_add(self._data, other._data), (self, other), "+")

        def _backward(out):
            self._grad = _fadd(self._grad, out._grad)
            other._grad = _fadd(other._grad, out._grad)

        out._backward = _backward
        return out

    def __mul__(self, other):
        other = _operand(other)
        if other is NotImplemented:
            return other
        out = Value(_mul(self._data, other._data), (self, other), "*")

        def _backward(out):
            self._grad = _fadd(self._grad, _fmul(other._data, out._grad))
            other._grad = _fadd(other._grad, _fmul(self._data, out._grad))

        out._backward = _backward
        return out

    def __pow__(self, other, modulo=None):
        if modulo is not None or isinstance(other, Value):
            return NotImplemented
        k = _number_or_none(other)
        if k is None:
            return NotImplemented
        out = Value(power(self._data, k), (self,), f"**{k}")
        k_minus_one = k - 1  # exact for ints, as Python computes it

        def _backward(out):
            p = power(float(self._data), k_minus_one)
            self._grad = _fadd(self._grad, _fmul(_fmul(k, p), out._grad))

        out._backward = _backward
        return out

    def exp(self):
        out = Value(math.exp(self._data), (self,), "exp")

        def _backward(out):
            self._grad = _fadd(self._grad, _fmul(out._data, out._grad))

        out._backward = _backward
        return out

    def log(self):
        out = Value(math.log(self._data), (self,), "log")

        def _backward(out):
            self._grad = _fadd(self._grad, _fmul(1.0 / self._data, out._grad))

        out._backward = _backward
        return out

    def tanh(self):
        out = Value(math.tanh(self._data), (self,), "tanh")

        def _backward(out):
            t = float(out._data)  # data set to an int: square it as a float, as every formula
            self._grad = _fadd(self._grad, _fmul(1.0 - _fmul(t, t), out._grad))

        out._backward = _backward
        return out

    def relu(self):
        x = self._data
        zero = 0 if type(x) is int else 0.0
        out = Value(zero if x < 0 else x, (self,), "ReLU")

        def _backward(out):
            slope = 1.0 if out._data > 0 else 0.0
            self._grad = _fadd(self._grad, _fmul(slope, out._grad))

        out._backward = _backward
        return out

    def sigmoid(self):
        x = float(self._data)
        if x >= 0:
            s = 1.0 / (1.0 + math.exp(-x))  # (1.0 is no NaN: the hardware's order is fine)
        else:  # the same formula rearranged so exp cannot overflow
            e = math.exp(x)
            s = e / (1.0 + e)
        out = Value(s, (self,), "sigmoid")

        def _backward(out):
            s = out._data
            self._grad = _fadd(self._grad, _fmul(_fmul(s, 1.0 - s), out._grad))

        out._backward = _backward
        return out

    def __neg__(self):  # -self
        return self * -1

    def __radd__(self, other):  # other + self
        return self.__add__(other)  # NotImplemented for a non-number, so Python says which

    def __sub__(self, other):  # self - other
        if isinstance(other, Value):
            return self + (-other)
        n = _number_or_none(other)
        return NotImplemented if n is None else self + _neg(n)

    def __rsub__(self, other):  # other - self
        n = _number_or_none(other)
        return NotImplemented if n is None else (-self) + n

    def __rmul__(self, other):  # other * self
        return self.__mul__(other)

    def __truediv__(self, other):  # self / other
        if isinstance(other, Value):
            return self * other**-1
        n = _number_or_none(other)
        return NotImplemented if n is None else self * power(n, -1)

    def __rtruediv__(self, other):  # other / self
        n = _number_or_none(other)
        return NotImplemented if n is None else self**-1 * n

    def __rpow__(self, other):
        return NotImplemented

    # -- comparisons: the data ordered as Python orders numbers, a plain bool.
    # == and the hash stay identity, which the set of children relies on.
    # (Under agrad.compile the compiled engine records each outcome as a guard.)
    def _other_data(self, other):
        return other._data if isinstance(other, Value) else _number_or_none(other)

    def __lt__(self, other):
        n = self._other_data(other)
        return NotImplemented if n is None else self._data < n

    def __le__(self, other):
        n = self._other_data(other)
        return NotImplemented if n is None else self._data <= n

    def __gt__(self, other):
        n = self._other_data(other)
        return NotImplemented if n is None else self._data > n

    def __ge__(self, other):
        n = self._other_data(other)
        return NotImplemented if n is None else self._data >= n

    # -- the backward pass
    def backward(self) -> None:
        topo = topological_order(self)
        for v in topo:
            v._grad = 0.0
        self._grad = 1.0
        try:
            for v in reversed(topo):
                v._backward(v)
        except BaseException:
            # a local gradient raised (say an OverflowError): leave no half-summed gradients
            for v in topo:
                v._grad = 0.0
            raise

    def __repr__(self) -> str:
        return f"Value({self._label}: {self._data!r})"

    # -- saving: a Value pickles as a leaf (its graph is not saved)
    def __reduce__(self):
        return (_restore_leaf, (self._data, self._grad, self._label))


# A Value's children and op are fixed once it is made: other nodes hold it as
# their child, so making it anew in place would change graphs it is part of.
_ALREADY_MADE = "Value.__init__ runs once: a Value is fixed once made; make a new Value instead"


def _restore_leaf(data, grad, label):
    v = Value(data, label=label)
    v.grad = grad
    return v


def _no_local_gradient(out) -> None:
    pass


def _operand(other):
    """The other side of an op as a Value (a constant leaf for a number)."""
    if isinstance(other, Value):
        return other
    n = _number_or_none(other)
    return NotImplemented if n is None else Value(n)


def _check_str(text, what):
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, not {type(text).__name__!r}")
    return str.__str__(text)  # the text itself: a subclass's __str__ or __eq__ is not kept


def _check_children(children):
    try:
        iterator = iter(children)
    except TypeError:
        raise TypeError("_children must be an iterable of Values") from None
    children = tuple(iterator)
    for c in children:
        if not isinstance(c, Value):
            raise TypeError(f"_children must be Values, not {type(c).__name__!r}")
    return children


def topological_order(root: Value) -> list[Value]:
    """Children before parents, in the order a recursive depth-first search
    over ``_children`` would list them, but with an explicit stack.

    >>> from agrad.pure import Value, topological_order
    >>> a = Value(2.0, label='a')
    >>> b = a * 3
    >>> b.label = 'b'
    >>> [v.label or v._op for v in topological_order(b)]
    ['a', '', 'b']
    """
    topo: list[Value] = []
    visited = {id(root)}
    stack = [(root, iter(root._children))]
    while stack:
        node, children = stack[-1]
        for child in children:
            if id(child) not in visited:
                visited.add(id(child))
                stack.append((child, iter(child._children)))
                break
        else:
            stack.pop()
            topo.append(node)
    return topo
