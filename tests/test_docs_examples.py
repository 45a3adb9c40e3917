"""Every Python example of the README and the documentation runs as written.

Each ```python block of README.md, CONTRIBUTING.md and the pages in docs/
is run on its own, as a reader pastes it: in a fresh interpreter, in an
empty directory (so the files an example writes land there), with figures
drawn off screen.  An example that fails as written fails here.  (The pages'
``{code-cell}`` blocks are executed by the documentation build itself.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def examples() -> list:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            name = f"{page.relative_to(ROOT)}:{line}"
            found.append(pytest.param(match[1], id=name))
    return found


def test_the_readme_has_examples_to_run():
    assert len(examples()) >= 5


@pytest.mark.parametrize("code", examples())
def test_example_runs_as_written(code, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
