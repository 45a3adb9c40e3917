"""Argument rules that the library's models share (``agrad.nn``, ``agrad.linreg``).

Kept in one place so that a neuron, a linear model and a loss decide the
same way whether their sums are fused nodes and which generators they accept.
"""

from __future__ import annotations

import random
from types import ModuleType

import agrad


def fused_sums(fused: object, value_class: type | None) -> bool:
    """Whether sums of ``value_class`` numbers are written as one ``agrad.sum``
    / ``agrad.dot`` node: by default on the compiled ``agrad.Value`` (the same
    bits as the chain of ``+``, with a fraction of the nodes) and as the chain
    on anything else; ``fused=True`` or ``False`` says so explicitly.
    ``value_class`` None stands for numbers that are not agrad's."""
    if fused is None:
        return value_class is agrad.Value
    if not isinstance(fused, bool):
        raise TypeError(f"fused must be True, False or None, not {type(fused).__name__!r}")
    if fused and value_class is not agrad.Value:
        raise ValueError(
            "fused=True needs the compiled engine's agrad.Value: "
            "agrad.sum and agrad.dot make nodes of that engine"
        )
    return fused


def checked_rng(rng: object) -> random.Random | ModuleType:
    """``rng`` if it is the ``random`` module or a ``random.Random``."""
    if rng is not random and not isinstance(rng, random.Random):
        raise TypeError(
            f"rng must be the random module or a random.Random, not {type(rng).__name__!r}"
        )
    return rng
