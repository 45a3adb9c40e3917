"""agrad: a scalar reverse-mode autograd whose engine is C++.

``from agrad import Value`` gives the compiled Value; ``agrad.pure.Value`` is
the pure-Python engine with the same contract.
"""

from agrad import pure

# agrad.sum and agrad.compile are not in __all__: `from agrad import *` must not
# shadow the builtins
from agrad._core import Value, dot
from agrad._core import sum as sum  # noqa: A004
from agrad.compiled import RecordingError
from agrad.compiled import compile as compile  # noqa: A004
from agrad.higher import grad, hessian, hvp
from agrad.viz import draw_dot

__version__ = "0.1.0"
__all__ = ["RecordingError", "Value", "dot", "draw_dot", "grad", "hessian", "hvp", "pure"]
