"""Two builds of agrad side by side: what a change to the binding costs per operation.

Usage: ``python benchmarks/compare_builds.py OLD_PYTHON NEW_PYTHON [--rounds N]
[--instructions]``, where each is the interpreter of a venv with one build of
agrad installed (for example one made from an older commit).  Each round
times every operation once in each build, in a fresh process, alternating, so
that the load of a shared machine falls on both alike; the table gives the
medians and new / old.  On a machine too loaded for times to mean much,
``--instructions`` counts instead, with valgrind's callgrind, the
instructions one iteration of each operation's loop executes (the loop's own
few included, the same in both builds): the same count on every run.  The
run suite (``run.py``) measures one build against floats, pure Python and
torch; this script is for a change to agrad itself.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

# Each operation as timeit sees it: statement and setup.
OPERATIONS = {
    "Value*Value": ("a * b", ""),
    "Value*float": ("a * 2.5", ""),
    "float*Value": ("2.5 * a", ""),
    "Value+Value": ("a + b", ""),
    "-Value": ("-a", ""),
    "Value/float": ("a / 3.0", ""),
    "Value.exp()": ("a.exp()", ""),
    "Value(1.5)": ("Value(1.5)", ""),
    "read .data": ("a.data", ""),
    "write .grad": ("a.grad = 0.5", ""),
    "_prev of a*b": ("p._prev", "p = a * b"),
    "backward, per node of a 1000-term chain": (
        "loss.backward()",
        "loss = sum(Value(float(i)) * a for i in range(1000))",
    ),
}
NODES_PER_BACKWARD = 3001  # the chain above: 1000 leaves, 1000 products, 1000 additions, and a

TIMER = """
import json, sys, timeit
from agrad import Value
a, b = Value(1.5), Value(-0.25)
ops = json.loads(sys.argv[1])
out = {}
for name, (stmt, setup) in ops.items():
    timer = timeit.Timer(stmt, setup, globals=globals())
    number, _ = timer.autorange()
    out[name] = min(timer.repeat(3, number)) / number
print(json.dumps(out))
"""


def time_build(python: str) -> dict[str, float]:
    done = subprocess.run(
        [python, "-c", TIMER, json.dumps(OPERATIONS)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{python} could not run agrad:\n{done.stderr}")
    return json.loads(done.stdout)


COUNTER = """
import gc, sys
from agrad import Value
gc.disable()  # a collection in one run and not the other would count as the operation's
a, b = Value(1.5), Value(-0.25)
exec(sys.argv[2])
loop = compile("for _ in range(int(sys.argv[3])):\\n    " + sys.argv[1], "loop", "exec")
exec(loop)
"""
COUNTED_ITERATIONS = 200_000


def instructions(python: str, stmt: str, setup: str, iterations: int) -> int:
    """What callgrind counts for a process that runs stmt `iterations` times."""
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    # A fixed hash seed: dict and set layouts, and so the instructions that
    # touch them, are then the same in every run.
    done = subprocess.run(
        [*valgrind, python, "-c", COUNTER, stmt, setup, str(iterations)],
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"callgrind could not run {python}:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def count_build(python: str) -> dict[str, float]:
    """Instructions per iteration of each operation's loop."""
    counts = {}
    for name, (stmt, setup) in OPERATIONS.items():
        # a backward pass is thousands of nodes: fewer iterations count as many
        iterations = COUNTED_ITERATIONS // (100 if name.startswith("backward") else 1)
        base = instructions(python, stmt, setup, 0)
        counts[name] = (instructions(python, stmt, setup, iterations) - base) / iterations
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", help="the Python of the venv with the old build")
    parser.add_argument("new", help="the Python of the venv with the new build")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions with callgrind instead"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.instructions:
        counted = {"old": count_build(args.old), "new": count_build(args.new)}
        print("| operation | old | new | new / old |  (instructions per iteration)")
        print("| --- | --- | --- | --- |")
        for name in OPERATIONS:
            old, new = counted["old"][name], counted["new"][name]
            if name.startswith("backward"):
                old, new = old / NODES_PER_BACKWARD, new / NODES_PER_BACKWARD
            print(f"| {name} | {old:,.0f} | {new:,.0f} | {new / old:.2f} |")
        return 0
    samples: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    for _ in range(args.rounds):
        for build, python in (("old", args.old), ("new", args.new)):
            for name, seconds in time_build(python).items():
                samples[build].setdefault(name, []).append(seconds)
    print(f"| operation | old | new | new / old |  ({args.rounds} rounds, medians)")
    print("| --- | --- | --- | --- |")
    for name in OPERATIONS:
        old, new = (statistics.median(samples[b][name]) for b in ("old", "new"))
        if name.startswith("backward"):
            old, new = old / NODES_PER_BACKWARD, new / NODES_PER_BACKWARD
        print(f"| {name} | {old * 1e9:.1f} ns | {new * 1e9:.1f} ns | {new / old:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
