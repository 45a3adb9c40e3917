// Python's arithmetic on ints and floats, in plain C++.
//
// agrad must give the very bits that the pure-Python engine (agrad.pure)
// gives, and raise where Python raises.  So a value is an int or a float as
// in Python (int op int stays int for + - * and non-negative int powers), and
// every operation here follows the rules CPython applies to the same operands:
// float ** float with its special cases and its errors, math.exp, math.log.
// Ints are 64-bit: a result outside that range is an error (IntOverflow)
// rather than a silent change of type.
//
// Nothing here knows of Python; errors come back as a Status that the binding
// turns into the matching Python exception.
#pragma once

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace agrad {

#if defined(__GNUC__) || defined(__clang__)
#define AGRAD_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define AGRAD_ALWAYS_INLINE inline __attribute__((always_inline))
#define AGRAD_ALWAYS_INLINE_LAMBDA __attribute__((always_inline))
#define AGRAD_NOINLINE inline __attribute__((noinline))
#else
#define AGRAD_UNLIKELY(x) (x)
#define AGRAD_ALWAYS_INLINE inline
#define AGRAD_ALWAYS_INLINE_LAMBDA
#define AGRAD_NOINLINE inline
#endif

enum class Status : uint8_t {
    Ok,
    IntOverflow,           // an int result outside 64 bits
    PowRange,              // float ** float overflowed (Python: OverflowError(ERANGE, ...))
    ZeroToNegative,        // 0.0 ** negative (Python: ZeroDivisionError)
    FractionalOfNegative,  // negative ** fractional would be complex
    MathRange,             // math.exp overflowed (Python: OverflowError "math range error")
    MathDomain,            // math.log outside its domain (Python: ValueError "math domain error")
    FloatDivisionByZero,   // x / 0.0 (Python: ZeroDivisionError "float division by zero")
};

struct Number {
    bool is_int = false;
    union {
        int64_t i;
        double f;
    };

    Number() : f(0.0) {}
    static Number of_int(int64_t v) {
        Number n;
        n.is_int = true;
        n.i = v;
        return n;
    }
    static Number of_float(double v) {
        Number n;
        n.f = v;
        return n;
    }
    // An int becomes a double with round-half-even, as Python's float(int) does.
    double as_double() const { return is_int ? static_cast<double>(i) : f; }
};

namespace detail {

inline bool add_overflows(int64_t a, int64_t b, int64_t* r) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_add_overflow(a, b, r);
#else
    if ((b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b)) return true;
    *r = a + b;
    return false;
#endif
}

inline bool mul_overflows(int64_t a, int64_t b, int64_t* r) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_mul_overflow(a, b, r);
#else
    if (a == 0 || b == 0) {
        *r = 0;
        return false;
    }
    if ((a == -1 && b == INT64_MIN) || (b == -1 && a == INT64_MIN)) return true;
    int64_t p = a * b;  // only trusted once the division check below agrees
    if (p / b != a) return true;
    *r = p;
    return false;
#endif
}

inline bool is_odd_integer(double x) { return std::fmod(std::fabs(x), 2.0) == 1.0; }

// a * b == p + *error exactly (Dekker's product, Veltkamp's split), for
// operands and product well inside the normal range (no overflow in the
// split, no underflow in the low parts): the callers below keep to 2^-450..2^450.
AGRAD_ALWAYS_INLINE double product_error(double a, double b, double p) {
    const double split = 134217729.0;  // 2^27 + 1
    const double ca = split * a, cb = split * b;
    const double a_high = ca - (ca - a), a_low = a - a_high;
    const double b_high = cb - (cb - b), b_low = b - b_high;
    return ((a_high * b_high - p) + a_high * b_low + a_low * b_high) + a_low * b_low;
}

// The spacing of doubles around a positive normal r that is not a power of two.
AGRAD_ALWAYS_INLINE double spacing(double r) {
    uint64_t bits;
    std::memcpy(&bits, &r, sizeof bits);
    bits = (bits & 0x7ff0000000000000ull) - (uint64_t{52} << 52);
    double ulp;
    std::memcpy(&ulp, &bits, sizeof ulp);
    return ulp;
}

// (for r > 0; as a comparison of doubles, which a SIMD loop has on every
// x86-64, where one of 64-bit integers needs SSE4.1)
AGRAD_ALWAYS_INLINE bool is_power_of_two(double r) {
    uint64_t bits;
    std::memcpy(&bits, &r, sizeof bits);
    bits &= 0x7ff0000000000000ull;  // r without its significand's bits
    double power;
    std::memcpy(&power, &bits, sizeof power);
    return r == power;
}

// pow(x, 2), pow(x, -1) and pow(x, -2) as a product and a quotient, where
// that is provably the bits the platform's pow gives (x well inside the
// normal range); false where it is not (then pow must be called).
//
// Why it is exact.  x * x and 1.0 / x are correctly rounded: r is the double
// nearest the exact v.  Below, the exact error |v - r| is measured (Dekker's
// product: the exact x*x - r, and for the quotient r*x - 1 = -(v - r)*x), and
// r kept only when it is at most a tolerance t of the spacing u of doubles
// at r, with r not a power of two, so that v lies in r's binade, where every
// other double is at least (1 - t) u from v.  A pow whose error is under
// (1 - t) ULP therefore returns r.
//
// glibc's pow (2.28 on; before, it was correctly rounded) bounds its error by
// its exp's, 0.509 ULP (0.511 without fma), plus what its log's relative
// error, 1.3 * 2^-68 (1.5 * 2^-68 without fma), becomes through exp: at most
// |y log x| * 1.5 * 2^-15 ULP, 0.54 ULP in all at the edge of the range
// (e_pow.c's header derives these).  The engine allows more for each: 0.52
// for exp and |y log x| * 2^-14 for log.  For x in [2^-32, 2^32] (the book's
// numbers) |y log x| <= 2 * 32 ln 2 < 45, a bound of 0.523 ULP, so t = 0.47;
// up to 2^450 (2^200 for x ** -2) it is 0.52 + 624 * 2^-14 < 0.559, so
// t = 0.44.  Measured on glibc 2.36, pow(x, 2) and x * x first differ at
// 0.49 of a spacing.  Elsewhere than glibc pow is always called.  CPython
// calls that pow for float ** float, so eager Python gets these bits too.
// Near ties (|v - r| close to u/2) pow and the product can round apart:
// there pow is called (on about 6% of random squares of the book's
// numbers).  benchmarks/pow_vs_multiply.py counts both.
#if defined(__GLIBC__)
constexpr bool kPowWithinBound = true;  // glibc's pow: the bound above
#else
constexpr bool kPowWithinBound = false;  // no bound known: pow is always called
#endif

// t above, for an operand x > 0 within 2^-450..2^450.
AGRAD_ALWAYS_INLINE double tie_tolerance(double x) {
    return x >= 0x1p-32 && x <= 0x1p32 ? 0.47 : 0.44;
}

// Whether r = x * x (x >= 0) is pow(x, 2)'s bits, by the test above: without
// a branch, so that a loop over many (a replay's group) runs as SIMD.
AGRAD_ALWAYS_INLINE bool square_is_product(double x, double r) {
    return kPowWithinBound & (x >= 0x1p-450) & (x <= 0x1p450) & !is_power_of_two(r) &
           (std::fabs(product_error(x, x, r)) <= tie_tolerance(x) * spacing(r));
}

AGRAD_ALWAYS_INLINE bool square_as_product(double x, double* out) {
    const double r = x * x;
    if (!square_is_product(x, r)) return false;
    *out = r;
    return true;
}

// 1 / q, for q = x (x ** -1) or q = x * x rounded, q + q_error its exact
// square (x ** -2, the gradient of a division: 1 / q rounds twice, so the
// double nearest 1 / v may be its neighbour, which is tried next).  The
// test: r*v - 1 == (t - 1) + e + r * q_error exactly, for v = q + q_error,
// t = r * q and e its product error; t - 1 is exact, since t is within a
// few ulps of 1 (Sterbenz), and the last product and the two sums are off
// by 2^-105 at most, far inside the tolerance's margin.  x is the operand
// of the power (q or its square root).
AGRAD_ALWAYS_INLINE bool reciprocal_checked(double x, double q, double q_error, double* out) {
    const double limit = tie_tolerance(x) * q;
    double r = 1.0 / q;
    for (int tries = q_error == 0.0 ? 1 : 2; tries > 0; --tries) {
        if (is_power_of_two(r)) return false;
        const double t = r * q;
        const double residual = ((t - 1.0) + product_error(r, q, t)) + r * q_error;
        if (std::fabs(residual) <= limit * spacing(r)) {
            *out = r;
            return true;
        }
        r = std::nextafter(r, residual > 0.0 ? 0.0 : HUGE_VAL);  // r*v > 1: r is too big
    }
    return false;
}

AGRAD_ALWAYS_INLINE bool reciprocal_as_quotient(double x, double* out) {
    return kPowWithinBound && x >= 0x1p-450 && x <= 0x1p450 && reciprocal_checked(x, x, 0.0, out);
}

AGRAD_ALWAYS_INLINE bool reciprocal_square_as_quotient(double x, double* out) {
    if (!kPowWithinBound || !(x >= 0x1p-200 && x <= 0x1p200)) return false;
    const double q = x * x;
    return reciprocal_checked(x, q, product_error(x, x, q), out);
}

}  // namespace detail

// -- float + and *, with one rule for the NaN they give.  When both operands
// are NaN, the hardware returns one of them (quieted), and which one depends
// on the register the compiler put each operand in: GCC swaps the operands
// of a commutative operation freely, and even CPython's `a + b` gives one
// sign before the interpreter specialises the instruction and the other
// after.  So every float + and * of every engine goes through this rule:
// two NaNs give the LEFT operand's NaN, quieted (bit 51 set, as the hardware
// quiets a signalling one).  With one NaN or none the hardware's result does
// not depend on the order, and is kept.  The test costs one compare, taken
// only when the result is a NaN.
inline double quiet(double x) {
    uint64_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    bits |= uint64_t{1} << 51;
    std::memcpy(&x, &bits, sizeof bits);
    return x;
}

// (If only b is a NaN, r already is b quieted; if neither, r is the hardware's
// default NaN, as for inf - inf.)
inline double add(double a, double b) {
    double r = a + b;
    if (AGRAD_UNLIKELY(r != r)) r = a != a ? quiet(a) : r;
    return r;
}

inline double mul(double a, double b) {
    double r = a * b;
    if (AGRAD_UNLIKELY(r != r)) r = a != a ? quiet(a) : r;
    return r;
}

// add(acc, mul(a, b)) with one test for both: a NaN operand of an addition
// makes its result a NaN, so a result that is no NaN had no NaN product nor
// accumulator, and the hardware's bits are the rule's.  (No FMA: the build
// has -ffp-contract=off.)
inline double add_mul(double acc, double a, double b) {
    double r = acc + a * b;
    if (AGRAD_UNLIKELY(r != r)) r = add(acc, mul(a, b));
    return r;
}

// The float + and * of a pass that may run twice (Graph::backward): first
// on the hardware alone (kRule false), then, only if that pass saw a NaN,
// again with the rule.  A + or * differs from the rule only when both its
// operands are NaN, and then its result is a NaN too; so a pass that made no
// NaN anywhere gave the rule's bits.
template <bool kRule>
struct Arith {
    static double add(double a, double b) { return kRule ? agrad::add(a, b) : a + b; }
    static double mul(double a, double b) { return kRule ? agrad::mul(a, b) : a * b; }
    static double add_mul(double acc, double a, double b) {
        return kRule ? agrad::add_mul(acc, a, b) : acc + a * b;
    }
};

inline Status add(Number a, Number b, Number* out) {
    if (a.is_int && b.is_int) {
        int64_t r;
        if (detail::add_overflows(a.i, b.i, &r)) return Status::IntOverflow;
        *out = Number::of_int(r);
    } else {
        *out = Number::of_float(add(a.as_double(), b.as_double()));
    }
    return Status::Ok;
}

inline Status mul(Number a, Number b, Number* out) {
    if (a.is_int && b.is_int) {
        int64_t r;
        if (detail::mul_overflows(a.i, b.i, &r)) return Status::IntOverflow;
        *out = Number::of_int(r);
    } else {
        // Optimizers rewrite x * -1.0 (the book's -v) as -x, which flips the
        // sign of a nan where the multiply instruction, and so Python, keeps
        // it; a multiplier the compiler cannot see keeps the multiply.
        volatile double multiplier = b.as_double();
        *out = Number::of_float(mul(a.as_double(), multiplier));
    }
    return Status::Ok;
}

inline Status negate(Number a, Number* out) {
    if (a.is_int) {
        if (a.i == INT64_MIN) return Status::IntOverflow;
        *out = Number::of_int(-a.i);
    } else {
        *out = Number::of_float(-a.f);
    }
    return Status::Ok;
}

// float ** float with CPython's special cases, in CPython's order: they settle
// what the platform's pow() would get wrong or report as an error.
AGRAD_NOINLINE Status float_pow_general(double base, double exponent, double* out) {
    if (exponent == 0.0) {  // x**0 is 1, even 0**0 and nan**0
        *out = 1.0;
        return Status::Ok;
    }
    if (std::isnan(base)) {
        *out = base;
        return Status::Ok;
    }
    if (std::isnan(exponent)) {  // 1**nan is 1
        *out = base == 1.0 ? 1.0 : exponent;
        return Status::Ok;
    }
    if (std::isinf(exponent)) {
        double magnitude = std::fabs(base);
        if (magnitude == 1.0)
            *out = 1.0;
        else if ((exponent > 0.0) == (magnitude > 1.0))
            *out = std::fabs(exponent);
        else
            *out = 0.0;
        return Status::Ok;
    }
    if (std::isinf(base)) {
        bool odd = detail::is_odd_integer(exponent);
        if (exponent > 0.0)
            *out = odd ? base : std::fabs(base);
        else
            *out = odd ? std::copysign(0.0, base) : 0.0;
        return Status::Ok;
    }
    if (base == 0.0) {
        if (exponent < 0.0) return Status::ZeroToNegative;
        *out = detail::is_odd_integer(exponent) ? base : 0.0;
        return Status::Ok;
    }
    bool negate_result = false;
    if (base < 0.0) {
        if (exponent != std::floor(exponent)) return Status::FractionalOfNegative;
        base = -base;
        negate_result = detail::is_odd_integer(exponent);
    }
    if (base == 1.0) {  // (-1) ** huge even/odd int, where some libms fail
        *out = negate_result ? -1.0 : 1.0;
        return Status::Ok;
    }
    errno = 0;
    // Through a volatile: where the exponent is a constant the optimiser turns
    // pow(x, -1.0) into 1.0 / x, which rounds differently from the libm pow
    // that Python calls, and `v / c` is computed as `v * c ** -1`.
    volatile double opaque_exponent = exponent;
    double r = std::pow(base, opaque_exponent);
    int err = errno;
    if (err == 0 && std::isinf(r))
        err = ERANGE;
    else if (err == ERANGE && r == 0.0)
        err = 0;  // underflow to 0 is not an error
    if (err != 0) return Status::PowRange;
    *out = negate_result ? -r : r;
    return Status::Ok;
}

// The exponents the book and micrograd use, decided before CPython's list of
// special cases (which they would all pass through): x ** 1 is x, whatever x
// (a NaN, an infinity and a signed zero come back as they went in), and
// x ** 2, x ** -1 and x ** -2 a product and a quotient where that is pow's bits.
// (Inlined, and the rest out of line: a replay squares a thousand errors.)
AGRAD_ALWAYS_INLINE Status float_pow(double base, double exponent, double* out) {
    double r;
    if (exponent == 1.0) {
        *out = base;
        return Status::Ok;
    }
    if (exponent == 2.0 && detail::square_as_product(std::fabs(base), &r)) {
        *out = r;
        return Status::Ok;
    }
    if (exponent == -1.0 && detail::reciprocal_as_quotient(std::fabs(base), &r)) {
        *out = std::copysign(r, base);
        return Status::Ok;
    }
    if (exponent == -2.0 && detail::reciprocal_square_as_quotient(std::fabs(base), &r)) {
        *out = r;
        return Status::Ok;
    }
    return float_pow_general(base, exponent, out);
}

// int ** non-negative int, exact.  A square is only taken when a higher bit of
// the exponent still needs it, so any overflow means the result overflows.
inline Status int_pow(int64_t base, int64_t exponent, int64_t* out) {
    int64_t result = 1;
    while (exponent > 0) {
        if (exponent & 1) {
            if (detail::mul_overflows(result, base, &result)) return Status::IntOverflow;
        }
        exponent >>= 1;
        if (exponent > 0 && detail::mul_overflows(base, base, &base)) return Status::IntOverflow;
    }
    *out = result;
    return Status::Ok;
}

// base ** exponent as Python computes it for ints and floats.
inline Status power(Number base, Number exponent, Number* out) {
    if (base.is_int && exponent.is_int && exponent.i >= 0) {
        int64_t r;
        Status s = int_pow(base.i, exponent.i, &r);
        if (s == Status::Ok) *out = Number::of_int(r);
        return s;
    }
    double r;
    Status s = float_pow(base.as_double(), exponent.as_double(), &r);
    if (s == Status::Ok) *out = Number::of_float(r);
    return s;
}

// exponent - 1 as a double, as Python computes `k - 1` (exactly, for an int k)
// before it turns it into a float for float ** int.
inline double exponent_minus_one(Number exponent) {
    if (!exponent.is_int) return exponent.f - 1.0;
    if (exponent.i == INT64_MIN)
        return static_cast<double>(INT64_MIN);  // -2**63-1 rounds to -2**63
    return static_cast<double>(exponent.i - 1);
}

inline Status math_exp(double x, double* out) {
    double r = std::exp(x);
    if (std::isinf(r) && std::isfinite(x)) return Status::MathRange;
    *out = r;
    return Status::Ok;
}

inline Status math_log(double x, double* out) {
    if (std::isnan(x) || x == std::numeric_limits<double>::infinity()) {
        *out = x;
        return Status::Ok;
    }
    if (!(x > 0.0)) return Status::MathDomain;
    *out = std::log(x);
    return Status::Ok;
}

// 1 / (1 + e^-x), rearranged for x < 0 so that exp cannot overflow.
inline double sigmoid(double x) {
    if (x >= 0.0) return 1.0 / (1.0 + std::exp(-x));
    double e = std::exp(x);
    return e / (1.0 + e);
}

inline Number relu(Number x) {
    if (x.is_int) return Number::of_int(x.i < 0 ? 0 : x.i);
    return Number::of_float(x.f < 0.0 ? 0.0 : x.f);
}

inline Status divide(double numerator, double denominator, double* out) {
    if (denominator == 0.0) return Status::FloatDivisionByZero;
    *out = numerator / denominator;
    return Status::Ok;
}

// -- comparisons, as Python orders numbers: exactly, even an int against a
// float (Python never rounds the int to a double first: 2**53 + 1 > 2.0**53),
// and NaN unordered, so every comparison with it is false.  The eager `<` of
// two Values and the check of a compiled function's guards both use it.
enum class Order : uint8_t { Less, Equal, Greater, Unordered };
enum class Comparison : uint8_t { Less, LessEqual, Greater, GreaterEqual };

inline Order order_int_float(int64_t i, double d) {
    if (std::isnan(d)) return Order::Unordered;
    if (d >= 9223372036854775808.0) return Order::Less;  // 2**63: above every int64
    if (d < -9223372036854775808.0) return Order::Greater;
    const double whole = std::trunc(d);
    const auto w = static_cast<int64_t>(whole);  // exact: -2**63 <= whole < 2**63
    if (i != w) return i < w ? Order::Less : Order::Greater;
    const double fraction = d - whole;  // exact
    return fraction > 0.0 ? Order::Less : fraction < 0.0 ? Order::Greater : Order::Equal;
}

inline Order reversed(Order o) {
    return o == Order::Less ? Order::Greater : o == Order::Greater ? Order::Less : o;
}

inline Order order(Number a, Number b) {
    if (a.is_int && b.is_int)
        return a.i < b.i ? Order::Less : a.i > b.i ? Order::Greater : Order::Equal;
    if (a.is_int) return order_int_float(a.i, b.f);
    if (b.is_int) return reversed(order_int_float(b.i, a.f));
    if (a.f < b.f) return Order::Less;
    if (a.f > b.f) return Order::Greater;
    return a.f == b.f ? Order::Equal : Order::Unordered;
}

inline bool holds(Comparison c, Order o) {
    switch (c) {
        case Comparison::Less:
            return o == Order::Less;
        case Comparison::LessEqual:
            return o == Order::Less || o == Order::Equal;
        case Comparison::Greater:
            return o == Order::Greater;
        case Comparison::GreaterEqual:
            return o == Order::Greater || o == Order::Equal;
    }
    return false;
}

}  // namespace agrad
