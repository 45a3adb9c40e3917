"""The fixtures the tests share: each engine in turn, and a stretch without
the cyclic garbage collector.  The helpers for comparing the engines are in
``engines.py`` beside it (a plain module, imported as ``from engines import
...``; pytest puts this directory on sys.path, as it does for ``chapter.py``).
"""

import gc

import pytest
from engines import ENGINES


@pytest.fixture(params=ENGINES, ids=["native", "pure"])
def Value(request):
    """Each engine's Value class in turn: README's contract holds for both."""
    return request.param


@pytest.fixture
def no_gc():
    """Reference counting alone: whatever a dropped graph needs the cyclic
    collector for stays alive, and the test sees it."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
