"""agrad: a scalar reverse-mode autograd whose engine is C++.

``from agrad import Value`` gives the compiled Value; ``agrad.pure.Value`` is
the pure-Python engine with the same contract.
"""

from agrad import pure
from agrad._core import Value, dot, sum  # noqa: A004 - agrad.sum is meant to shadow the builtin
from agrad.viz import draw_dot

__version__ = "0.1.0"
__all__ = ["Value", "dot", "draw_dot", "pure"]
