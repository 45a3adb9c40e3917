"""What the tests of the two Value engines share: the engines, how their
results are compared, and the operations applied to both.

Only the installed agrad is imported, so this works from the source tree and
against an installed wheel alike.
"""

import struct

import agrad
import agrad.pure

# The compiled engine first: where a test compares the two, the pure one is the
# reference.
ENGINES = (agrad.Value, agrad.pure.Value)


def exact(x):
    """A number's identity, for asserting that two engines gave the same result.

    Two numbers are the same when they have the same type and, for floats, the
    same IEEE bits; other numbers (int, bool, numpy's scalars) by type and
    repr, which is exact for them.  So ``True`` is not ``1``, ``1`` is not
    ``1.0`` and ``-0.0`` is not ``0.0``: README's contract keeps Python's number
    types and has both engines agree bit for bit.

    A nan is compared by its bits too, sign and payload: every engine gives
    the same nan, even from two nans (``nan + -nan`` is the left operand's
    nan, quieted: docs/architecture.md, "Exactness").
    """
    if isinstance(x, float):
        return (type(x).__name__, struct.pack("<d", x))
    return (type(x).__name__, repr(x))


def outcome(thunk):
    """What calling thunk did: ("ok", its result) or ("raised", the exception's
    type, its message).

    Only the exceptions README's contract names are caught: anything else is a
    bug, and fails the test.  The message is as ``message`` reads it.
    """
    try:
        return ("ok", thunk())
    except (ArithmeticError, ValueError, TypeError) as error:
        return ("raised", type(error), message(error))


def message(error):
    """An exception's text, with the compiled class read as ``Value``.

    Python's own messages ("unsupported operand type(s) for +: ...") name a
    class by its C name, which for an extension type is dotted,
    ``agrad._core.Value``, where the pure engine's class is plain ``Value``:
    a known difference (docs/reliability.md), not a disagreement.
    """
    return str(error).replace("agrad._core.Value", "Value")


# Every operation of the contract, on Values or with a constant on either side,
# and one expression mixing them: each engine's gradients are checked against
# finite differences, and the engines against each other bit for bit.
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
