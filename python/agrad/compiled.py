"""agrad.compile: record the graph a function builds once, then replay it in C++.

The first call of a compiled function for a given structure of arguments (how
many numbers, how they sit in lists, tuples and NumPy arrays, and the other
arguments as they are) records: each number becomes an input leaf, the
function runs once as ordinary agrad code, and the engine keeps every node it
made, in the order it made them.  Later calls with the same structure write
the new numbers into the input leaves and recompute the recorded operations
in that order, in C++, with no Python object per node.  The result is the same
Value (or list/tuple of Values) every time, holding the new numbers, and
``backward()`` on it is eager agrad's own backward pass over that graph.

So a replay performs the very operations eager agrad performs on the same
numbers with the arguments as Values, in the same order: data, gradients and
errors are the same bit for bit.  Nodes made before the recording (the model's
parameters) are not recomputed but read: their current ``data`` is used by
every call, so ``p.data -= lr * p.grad`` between calls works.

What a replay cannot see: anything the function decides from the numbers.
Reading a Value's ``data`` while recording is an error for that reason, and
randomness inside the function (``random.sample``) runs only at recording:
sample batches outside the compiled function.
"""

from __future__ import annotations

import functools
import numbers
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from agrad import _core
from agrad._core import Value

_PLAIN_NUMBERS = frozenset((float, int))


def _substitute(obj: Any, leaves: list[Value], index: list[int]) -> Any:
    """The argument with its numbers replaced by the input leaves, in order."""
    t = type(obj)
    if t is list or t is tuple:
        start = index[0]
        if all(map(_PLAIN_NUMBERS.__contains__, map(type, obj))):
            # a row of plain floats and ints (the common case): one slice
            index[0] = start + len(obj)
            items = leaves[start : index[0]]
        else:
            items = [_substitute(o, leaves, index) for o in obj]
        return items if t is list else tuple(items)
    if t is np.ndarray:
        flat = np.empty(obj.size, dtype=object)
        for i in range(obj.size):
            flat[i] = leaves[index[0]]
            index[0] += 1
        return flat.reshape(obj.shape)
    if not isinstance(obj, Value) and (t is float or t is int or isinstance(obj, numbers.Real)):
        leaf = leaves[index[0]]
        index[0] += 1
        return leaf
    return obj


def _outputs(result: Any) -> list[Value]:
    values = list(result) if type(result) in (list, tuple) else [result]
    for v in values:
        if not isinstance(v, Value):
            raise TypeError(
                f"agrad.compile: the function must return an agrad.Value or a list or tuple "
                f"of them, not {type(v).__name__!r}"
            )
    return values


class _Recorded:
    __slots__ = ("outputs", "program", "result")

    def __init__(self, program: _core._Program, result: Any, outputs: list[Value]):
        self.program = program
        self.result = result
        self.outputs = outputs


class CompiledFunction:
    """A function whose graph is recorded once per argument structure and
    replayed in C++ (see ``agrad.compile``).

    >>> import agrad
    >>> w = agrad.Value(2.0)
    >>> scaled = agrad.compile(lambda xs: agrad.sum(w * x for x in xs))
    >>> type(scaled).__name__
    'CompiledFunction'
    >>> first = scaled([1.0, 2.0])
    >>> first.data
    6.0
    >>> scaled([3.0, 4.0]) is first, first.data
    (True, 14.0)
    """

    def __init__(self, fn: Callable[..., Any], max_programs: int = 8):
        if not callable(fn):
            raise TypeError(f"agrad.compile needs a function, not {type(fn).__name__!r}")
        if type(max_programs) is not int or max_programs < 1:
            raise ValueError(f"max_programs must be a positive int, not {max_programs!r}")
        self.fn = fn
        self.max_programs = max_programs
        self._programs: OrderedDict[Any, _Recorded] = OrderedDict()
        functools.update_wrapper(self, fn)

    @property
    def recordings(self) -> int:
        """How many argument structures have a program kept now."""
        return len(self._programs)

    def program(self, *args: Any, **kwargs: Any) -> _core._Program | None:
        """The program kept for these arguments' structure, if any."""
        recorded = self._programs.get(_core._flatten(args, kwargs, np.ndarray)[0])
        return recorded.program if recorded else None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # the key and the numbers, converted, in one pass in C (_core._flatten)
        key, numbers_in = _core._flatten(args, kwargs, np.ndarray)
        recorded = self._programs.get(key)
        if recorded is None:
            return self._record(key, args, kwargs, numbers_in)
        self._programs.move_to_end(key)
        recorded.program.run(numbers_in)
        result = recorded.result
        return list(result) if type(result) is list else result

    def _record(self, key: Any, args: tuple, kwargs: dict, numbers_in: _core._Numbers) -> Any:
        _core._begin_recording()
        try:
            leaves = [Value(x) for x in numbers_in.values()]
            index = [0]
            sub_args = [_substitute(a, leaves, index) for a in args]
            sub_kwargs = {k: _substitute(v, leaves, index) for k, v in kwargs.items()}
            result = self.fn(*sub_args, **sub_kwargs)
            outputs = _outputs(result)
        except BaseException:
            _core._abort_recording()
            raise
        program = _core._finish_recording(leaves, outputs)
        if type(result) is list:
            result = list(result)
        self._programs[key] = _Recorded(program, result, outputs)
        if len(self._programs) > self.max_programs:
            self._programs.popitem(last=False)
        return list(result) if type(result) is list else result


def compile(fn: Callable[..., Any] | None = None, *, max_programs: int = 8) -> Any:  # noqa: A001
    """Record the graph ``fn`` builds once per argument structure, then replay it
    in C++: the same data, gradients and errors as eager agrad, bit for bit.

    ``fn`` takes numbers (alone, in lists, tuples or NumPy arrays) and returns
    an ``agrad.Value`` or a list or tuple of them; each call returns the same
    result object(s), holding the new numbers (keep ``loss.data`` if you need
    an old one).  Parameters it uses are read at every call.  ``fn`` may not
    read a Value's ``data`` (the graph would depend on the numbers), and its
    randomness runs only when it is recorded.  Up to ``max_programs``
    structures are kept, the least recently used dropped first.
    Usable as ``@agrad.compile`` or ``@agrad.compile(max_programs=...)``.

    >>> import agrad
    >>> w = agrad.Value(2.0, label='w')
    >>> @agrad.compile
    ... def loss(xs, ys):
    ...     return agrad.sum((w * x - y) ** 2 for x, y in zip(xs, ys))
    ...
    >>> result = loss([1.0, 2.0], [2.0, 5.0])
    >>> result.backward()
    >>> result, w.grad
    (Value(: 1.0), -4.0)
    >>> result = loss([3.0, 1.0], [6.0, 1.0])
    >>> result.backward()
    >>> result, w.grad
    (Value(: 1.0), 2.0)
    """
    if fn is None:
        return functools.partial(CompiledFunction, max_programs=max_programs)
    return CompiledFunction(fn, max_programs=max_programs)
