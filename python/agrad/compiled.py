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

What makes a replay sound: every decision the recording made is either part
of the key, a guard, or refused.

* The key: the arguments' structure, and the value of every argument that is
  not a number (``bool``, ``None``, a ``str``, an enum: JAX's static
  arguments), and the plain numbers the function reads from its closure and
  its module's globals (an annealed coefficient): each distinct value is its
  own recording.
* Guards: a comparison of Values (``v > 0``) gives a plain bool eagerly; while
  recording, the engine keeps its outcome.  A replay checks every guard on
  the new numbers, and when one comes out otherwise, the function is recorded
  again for that pattern of outcomes; each pattern's program is kept (up to
  ``max_programs``, least recently used dropped first).
* Refused (``agrad.RecordingError``, naming the user's line): reading or
  writing a Value's numbers by any other path while recording (``.data``,
  ``.grad``, ``repr``, copy and pickle, ``backward()``, an optimizer's step).
* An operation that raised while recording (``try: x.log() except ValueError``)
  means that call ran eagerly: its graph went through an ``except`` branch, so
  it is not kept, and the next call records again.

What the engine cannot see: numbers read through other objects (attributes,
containers, other modules' globals) and randomness are fixed at recording.
"""

from __future__ import annotations

import builtins
import dis
import functools
import numbers
import os
import sys
import sysconfig
import types
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from agrad import _core
from agrad._core import RecordingError, Value

__all__ = ["CompiledFunction", "RecordingError", "compile"]

# A refusal names the user's line: the first frame outside agrad and the standard library.
_core._set_library_dirs(
    [os.path.dirname(os.path.abspath(__file__)) + os.sep, sysconfig.get_paths()["stdlib"] + os.sep]
)


def _outputs(result: Any) -> list[Value]:
    values = list(result) if type(result) in (list, tuple) else [result]
    for v in values:
        if not isinstance(v, Value):
            raise TypeError(
                f"agrad.compile: the function must return an agrad.Value or a list or tuple "
                f"of them, not {type(v).__name__!r}"
            )
    return values


_NUMBER_TYPES = frozenset((float, int, bool, complex))
_LOAD_GLOBAL = dis.opmap["LOAD_GLOBAL"]
_LOAD_NAME = dis.opmap["LOAD_NAME"]
# LOAD_GLOBAL's argument holds the name's index shifted left by one from 3.11 on
# (the low bit says whether to push a NULL first)
_LOAD_GLOBAL_SHIFT = 1 if sys.version_info >= (3, 11) else 0


def _loaded_globals(code: types.CodeType) -> set[str]:
    """The names `code` loads with LOAD_GLOBAL or LOAD_NAME (not the code
    nested in it), read from its bytecode directly: what
    ``dis.get_instructions`` would say, without making an object an
    instruction, which took 120 ms for a generated function of 10,000 lines."""
    names = code.co_names
    raw = code.co_code
    found: set[str] = set()
    extended = 0
    # wordcode: an opcode and its argument byte, EXTENDED_ARG adding high bytes;
    # the inline caches of 3.11+ are CACHE opcodes, ignored here as by dis
    for i in range(0, len(raw), 2):
        op, arg = raw[i], raw[i + 1] | extended
        if op == dis.EXTENDED_ARG:
            extended = arg << 8
            continue
        extended = 0
        if op == _LOAD_GLOBAL:
            found.add(names[arg >> _LOAD_GLOBAL_SHIFT])
        elif op == _LOAD_NAME:
            found.add(names[arg])
    return found


def _is_number(v: Any) -> bool:
    return type(v) in _NUMBER_TYPES or isinstance(v, numbers.Number)


def _may_hold_number(cell: Any) -> bool:
    """A closure cell worth watching: it holds a number, None or nothing yet."""
    try:
        v = cell.cell_contents
    except ValueError:  # not bound yet
        return True
    return v is None or _is_number(v)


class _FreeNumbers:
    """The plain numbers a function reads from its closure and its module's
    globals, as a key: a recording made with ``coef = 0.5`` is not replayed
    once ``coef`` is 0.25.

    The names are the globals the function's code (and the code nested in it:
    lambdas, comprehensions) loads, found once in its bytecode; builtins not
    shadowed by a global are left out.  A global name or a closure cell is
    watched if it holds a number, ``None`` or nothing yet when the function
    is compiled: one that holds a module, a function, a class or a model then
    is taken to keep holding one (rebinding ``math`` to a float is not a use
    we serve), which keeps the common call to a few lookups.  Their values are read at every
    call; what is not a number is left out of the key.
    """

    __slots__ = ("cells", "names", "namespace", "watched")

    def __init__(self, fn: Callable[..., Any]):
        fn = getattr(fn, "__func__", fn)  # a bound method: its function
        code = getattr(fn, "__code__", None)
        self.cells: tuple = tuple(
            c for c in getattr(fn, "__closure__", None) or () if _may_hold_number(c)
        )
        self.namespace: dict = getattr(fn, "__globals__", {})
        namespace = self.namespace

        def watchable(n: str) -> bool:  # a global holding a number or None, or none yet
            if n in namespace:
                v = namespace[n]
                return v is None or _is_number(v)
            return not hasattr(builtins, n)  # (a builtin not shadowed is left out)

        names: set[str] = set()
        stack = [code] if code is not None else []
        while stack:
            c = stack.pop()
            # co_names holds every name the code loads (attributes too): only
            # when one could be watched is the bytecode read for the loads
            if any(watchable(n) for n in c.co_names):
                names.update(n for n in _loaded_globals(c) if watchable(n))
            stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
        self.names: tuple[str, ...] = tuple(sorted(names))
        self.watched = bool(self.cells or self.names)

    def key(self) -> tuple:
        found: list[Any] = []
        for cell in self.cells:
            try:
                v = cell.cell_contents
            except ValueError:  # an empty cell: a name not yet bound
                continue
            if _is_number(v):
                found.append(v)
        get = self.namespace.get
        for name in self.names:
            v = get(name)
            if v is not None and _is_number(v):
                found.append((name, v))
        # the type as well as the value: 1 == 1.0 == True, yet each is its own graph
        return tuple((type(v), v) for v in found)


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
        # key -> the programs recorded for it, one per pattern of guard outcomes,
        # the most recently used last
        self._programs: OrderedDict[Any, list[_Recorded]] = OrderedDict()
        self._free_numbers = _FreeNumbers(fn)
        self._instance: weakref.ref | None = None  # set on a method bound to an instance
        self._bound: weakref.WeakKeyDictionary | None = None
        functools.update_wrapper(self, fn)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        """``@agrad.compile`` on a method: each instance gets its own compiled
        function (and so its own programs), made at its first use and freed with it."""
        if instance is None:
            return self
        if self._bound is None:
            self._bound = weakref.WeakKeyDictionary()
        try:
            bound = self._bound.get(instance)
        except TypeError:
            raise TypeError(
                f"@agrad.compile on a method needs instances that can be weakly referenced "
                f"and hashed; {type(instance).__name__!r} objects cannot (add '__weakref__' "
                f"to its __slots__)"
            ) from None
        if bound is None:
            bound = CompiledFunction(self.fn, max_programs=self.max_programs)
            bound._instance = weakref.ref(instance)
            self._bound[instance] = bound
        return bound

    @property
    def recordings(self) -> int:
        """How many programs are kept now (argument structures times guard patterns)."""
        return sum(map(len, self._programs.values()))

    def _key(self, args: tuple, kwargs: dict) -> tuple[Any, _core._Numbers]:
        key, numbers_in = _core._flatten(args, kwargs, np.ndarray)
        if self._free_numbers.watched:
            free = self._free_numbers.key()
            if free:
                key = (key, free)
        return key, numbers_in

    def program(self, *args: Any, **kwargs: Any) -> _core._Program | None:
        """The program most recently used for these arguments' key, if any."""
        recorded = self._programs.get(self._key(args, kwargs)[0])
        return recorded[-1].program if recorded else None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # the key and the numbers, converted, in one pass in C (_core._flatten);
        # the hot path of every compiled training step, so written out in full
        key, numbers_in = _core._flatten(args, kwargs, np.ndarray)
        if self._free_numbers.watched:
            free = self._free_numbers.key()
            if free:
                key = (key, free)
        recorded = self._programs.get(key)
        if recorded is None:
            return self._record(key, args, kwargs)
        latest = recorded[-1]
        if latest.program.run(numbers_in):
            if len(self._programs) > 1:
                self._programs.move_to_end(key)
            result = latest.result
            return list(result) if type(result) is list else result
        return self._other_pattern(key, recorded, args, kwargs, numbers_in)

    def _other_pattern(
        self, key: Any, recorded: list[_Recorded], args: tuple, kwargs: dict, numbers_in: Any
    ) -> Any:
        """The latest program's guards flipped (or an operation failed): another
        program kept for this key, the most recently used first, or a new recording."""
        self._programs.move_to_end(key)
        for i in range(len(recorded) - 2, -1, -1):
            r = recorded[i]
            if r.program.run(numbers_in):
                recorded.append(recorded.pop(i))
                result = r.result
                return list(result) if type(result) is list else result
        return self._record(key, args, kwargs)

    def _call_fn(self, args: tuple, kwargs: dict) -> Any:
        if self._instance is None:
            return self.fn(*args, **kwargs)
        instance = self._instance()
        if instance is None:  # (the instance is what called us: it is alive)
            raise ReferenceError("the instance of this compiled method is gone")
        return self.fn(instance, *args, **kwargs)

    def _record(self, key: Any, args: tuple, kwargs: dict) -> Any:
        _core._begin_recording()
        try:
            # the same walk as the key's, now making an input leaf of each number
            _, _, sub_args, sub_kwargs, leaves = _core._flatten(args, kwargs, np.ndarray, True)
            result = self._call_fn(sub_args, sub_kwargs)
            outputs = _outputs(result)
        except BaseException:
            _core._abort_recording()
            raise
        program = _core._finish_recording(leaves, outputs)
        if type(result) is list:
            result = list(result)
        if program is not None:  # None: an operation raised and the function went on
            self._keep(key, _Recorded(program, result, outputs))
        return list(result) if type(result) is list else result

    def _keep(self, key: Any, recorded: _Recorded) -> None:
        programs = self._programs.setdefault(key, [])
        programs.append(recorded)
        self._programs.move_to_end(key)
        while self.recordings > self.max_programs:  # the least recently used goes first
            oldest_key, oldest = next(iter(self._programs.items()))
            oldest.pop(0)
            if not oldest:
                del self._programs[oldest_key]


def compile(fn: Callable[..., Any] | None = None, *, max_programs: int = 8) -> Any:  # noqa: A001
    """Record the graph ``fn`` builds once per argument structure, then replay it
    in C++: the same data, gradients and errors as eager agrad, bit for bit.

    ``fn`` takes numbers (alone, in lists, tuples or NumPy arrays) and returns
    an ``agrad.Value`` or a list or tuple of them; each call returns the same
    result object(s), holding the new numbers (keep ``loss.data`` if you need
    an old one).  Parameters it uses are read at every call.  Branches on
    comparisons of Values (``if v > 0:``) are guards: a replay whose guards
    come out otherwise records the function again.  Arguments that are not
    numbers (``bool``, ``str``, ``None``, enums) and plain numbers in its
    closure or globals select the program.  ``fn`` may not read or write a
    Value's ``data`` or ``grad`` otherwise (``agrad.RecordingError``), and its
    randomness runs only when it is recorded.  Up to ``max_programs`` programs
    are kept, the least recently used dropped first.  Usable as
    ``@agrad.compile``, ``@agrad.compile(max_programs=...)`` and on methods.

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
