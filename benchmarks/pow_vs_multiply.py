"""Whether `x ** 2` and `x ** -1` could be a multiplication and a division.

The book squares errors with `** 2`, and micrograd divides with `** -1`;
both go through the platform's `pow` (CPython's float_pow does, so agrad's
engines do too).  A multiplication is several times cheaper, but it may only
replace `pow` where it gives the same bits.  This script counts, on this
machine's libm, the doubles where `pow(x, 2.0) != x * x` and
`pow(x, -1.0) != 1.0 / x`: on random doubles, and on squares that fall
exactly halfway between two doubles (x an odd integer of 27 bits, whose
square needs 54), where a pow that is not correctly rounded may round the
other way.  Any mismatch means the substitution would change agrad's bits,
so the engine keeps `pow`.

    python benchmarks/pow_vs_multiply.py [--samples N]
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import sys


def mismatches(samples: int, rng: random.Random) -> dict[str, tuple[int, int]]:
    """(mismatches, samples) for each kind of operand and each substitution."""
    squares = random_inverse = random_squares = 0
    for _ in range(samples):
        k = rng.randrange(2**26 + 1, 2**27, 2)  # odd, 27 bits: k*k is a tie or close
        x = k * 2.0 ** rng.randint(-40, 40)
        squares += math.pow(x, 2.0) != x * x
        y = rng.uniform(-1e10, 1e10)
        random_squares += math.pow(y, 2.0) != y * y
        random_inverse += math.pow(y, -1.0) != 1.0 / y
    return {
        "x ** 2 == x * x, x with 27 significant bits": (squares, samples),
        "x ** 2 == x * x, x uniform in (-1e10, 1e10)": (random_squares, samples),
        "x ** -1 == 1 / x, x uniform in (-1e10, 1e10)": (random_inverse, samples),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/pow_vs_multiply.py",
        description="Count the doubles where this machine's pow(x, 2) differs from x * x "
        "and pow(x, -1) from 1 / x, which decides whether agrad may replace one by the other.",
    )
    parser.add_argument(
        "--samples", type=int, default=1_000_000, help="doubles drawn for each case (1000000)"
    )
    parser.add_argument("--seed", type=int, default=1, help="the random seed (1)")
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error("--samples must be at least 1")
    print(
        f"{platform.machine()}, {platform.libc_ver()[0]} {platform.libc_ver()[1]}, "
        f"Python {platform.python_version()}"
    )
    for case, (bad, n) in mismatches(args.samples, random.Random(args.seed)).items():
        print(f"{case}: {bad} of {n} differ ({100 * bad / n:.3f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
