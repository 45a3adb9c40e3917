"""Where `x ** 2`, `x ** -1` and `x ** -2` may be a multiplication and a division.

The book squares errors with `** 2`, micrograd divides with `** -1`, and the
gradient of a division is `** -2`; CPython computes each with the platform's
`pow`, so agrad must give `pow`'s bits.  A product or a quotient is several
times cheaper, but rounds differently from a `pow` that is not correctly
rounded, near ties.  The engine (`cpp/agrad/number.hpp`) takes the product
or quotient only where it can prove the bits the same: the exact error of
the rounded result is at most a tolerance t of the spacing of doubles there
(0.47 for x in [2^-32, 2^32], 0.44 beyond), so any `pow` within 1 - t ULP
(glibc's bounds its own error at 0.52 ULP plus a term that grows with
|k log x|: `number.hpp` derives t from it) returns it.

This script counts, on this machine's libm, for each exponent: the doubles
where `pow` and the product differ; how many of them the engine's test takes
(the test, in exact rational arithmetic here); among those, how many differ
(must be 0); and whether `agrad.Value(x) ** k` gives CPython's `x ** k` on
every one.  Operands: random doubles; squares that fall exactly halfway
between two doubles (x an odd integer of 27 bits, whose square needs 54);
and doubles whose rounded product or quotient lies at least 0.4 of a
spacing from x ** k, where the tolerance decides (near a tie; and for
x ** -2, whose quotient 1 / (x * x) rounds twice, where it is one double
off, and the engine tries its neighbour).

    python benchmarks/pow_vs_multiply.py [--samples N]
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import struct
import sys
from fractions import Fraction

import agrad

# the engine's test: |exact - rounded| <= the tolerance of the spacing, the
# rounded result no power of two, x within these bounds (number.hpp)
BOUNDS = {2: 2.0**450, -1: 2.0**450, -2: 2.0**200}


def rounded(x: float, k: int) -> float:
    """x ** k as a product or a quotient (x > 0)."""
    return x * x if k == 2 else 1.0 / x if k == -1 else 1.0 / (x * x)


def tolerance(x: float) -> Fraction:
    return Fraction(47, 100) if 2.0**-32 <= x <= 2.0**32 else Fraction(44, 100)


def distance(x: float, r: float, k: int) -> Fraction:
    """|x ** k - r|, exactly, in spacings of doubles at r."""
    return abs(Fraction(x) ** k - Fraction(r)) / Fraction(math.ulp(r))


def engine_value(x: float, k: int) -> float | None:
    """The product or quotient the engine would use for x ** k (x > 0), or
    None where it calls pow: the rounded result, and for k = -2 (which
    rounds twice) its neighbour toward the exact value next, taken when
    within the tolerance and no power of two."""
    if not 1 / BOUNDS[k] <= x <= BOUNDS[k]:
        return None
    r = rounded(x, k)
    for _ in range(2 if k == -2 else 1):
        if math.frexp(r)[0] == 0.5:  # a power of two
            return None
        if distance(x, r, k) <= tolerance(x):
            return r
        r = math.nextafter(r, 0.0 if Fraction(r) > Fraction(x) ** k else math.inf)
    return None


def bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def near_ties(samples: int, k: int, rng: random.Random) -> list[float]:
    """x, of any size the engine takes, whose rounded x ** k is at least 0.4
    of a spacing off."""
    near: list[float] = []
    while len(near) < samples:
        x = math.ldexp(1.0 + rng.random(), rng.randint(-180, 180))
        if distance(x, rounded(x, k), k) >= Fraction(2, 5):
            near.append(x if rng.random() < 0.5 else -x)
    return near


def operands(samples: int, rng: random.Random) -> dict[str, list[float]]:
    ties, uniform = [], []
    for _ in range(samples):
        odd = rng.randrange(2**26 + 1, 2**27, 2)  # odd, 27 bits: odd * odd is a tie
        scale = 2.0 ** rng.randint(-40, 40)
        ties.append(odd * scale)
        uniform.append(rng.uniform(-1e10, 1e10))
    return {
        "x with 27 significant bits (squares on a tie)": ties,
        "x uniform in (-1e10, 1e10)": uniform,
    }


def count(xs: list[float], k: int) -> tuple[int, int, int, int]:
    """(pow and the product or quotient differ, the engine takes a product or
    quotient, what it takes differs from pow, agrad's x ** k differs from
    CPython's)."""
    differ = taken = wrong = agrad_differs = 0
    for x in xs:
        if x == 0.0:
            continue
        python = x**k
        power = math.pow(abs(x), k)
        different = bits(power) != bits(rounded(abs(x), k))
        value = engine_value(abs(x), k)
        differ += different
        taken += value is not None
        wrong += value is not None and bits(value) != bits(power)
        agrad_differs += bits((agrad.Value(x) ** k).data) != bits(python)
    return differ, taken, wrong, agrad_differs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/pow_vs_multiply.py",
        description="Count the doubles where this machine's pow(x, 2), pow(x, -1) and "
        "pow(x, -2) differ from a product or a quotient, where the engine takes the "
        "product or quotient instead of pow, and check that it is never where they differ.",
        epilog="Exit status: 0 when the engine never takes a product that pow contradicts "
        "and agrad gives CPython's bits throughout, 1 otherwise.",
    )
    parser.add_argument(
        "--samples", type=int, default=20_000, help="doubles drawn for each case (20000)"
    )
    parser.add_argument("--seed", type=int, default=1, help="the random seed (1)")
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error("--samples must be at least 1")
    print(
        f"{platform.machine()}, {platform.libc_ver()[0]} {platform.libc_ver()[1]}, "
        f"Python {platform.python_version()}"
    )
    sound = True
    rng = random.Random(args.seed)
    cases = [(case, xs, k) for case, xs in operands(args.samples, rng).items() for k in (2, -1, -2)]
    cases += [
        (f"x with x ** {k} near a tie", near_ties(args.samples, k, rng), k) for k in (2, -1, -2)
    ]
    for case, xs, k in cases:
        differ, taken, wrong, agrad_differs = count(xs, k)
        n = len(xs)
        print(
            f"x ** {k}, {case}: pow differs from the product on {differ} of {n} "
            f"({100 * differ / n:.2f}%); the engine takes the product on {taken} "
            f"({100 * taken / n:.1f}%), {wrong} of them where pow differs; "
            f"agrad differs from CPython on {agrad_differs}"
        )
        sound &= wrong == 0 and agrad_differs == 0
    return 0 if sound else 1


if __name__ == "__main__":
    sys.exit(main())
