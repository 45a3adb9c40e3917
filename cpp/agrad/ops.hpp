// The table of operations.  Each operation of a Value is defined here once:
// those of one operand (exp, log, tanh, relu, sigmoid) with their Value
// method and `_op` name, and + , * and ** k further below.  An entry has its
// value on a float, its value on a Python number (where ints have rules of
// their own), and its local derivative.  Every pass reads these definitions:
// the eager operation (Graph::unary), a recording's recompute, the decoded
// forward replay (replay.cpp), both backward passes (Graph::propagate and a
// kept schedule's steps), and the binding, which makes a Value method of each
// entry.  agrad.pure writes the same formulas in Python: the readable
// specification, which the exactness tests hold this table to, bit for bit.
//
// An entry's gradient() writes its local derivative a second time, as the
// Value operations that agrad.grad(..., create_graph=True) builds (so the
// gradient can be differentiated again): the very operations
// agrad.pure's Python would make, in its order, for the same bits.
//
// To add an operation `foo` of one operand:
//   1. a struct `Foo` below, with value(), derivative() and gradient() (and
//      of_number() if ints keep a rule of their own, as relu's do);
//   2. a line X(Foo, "foo", "foo", "...") in AGRAD_UNARY_OPS, which gives it
//      its Op, its decoded kind, its case in every pass and its Value method;
//   3. `def foo(self)` in python/agrad/pure.py with the same formulas, its
//      case in python/agrad/higher.py's _float_sweep and _graph_sweep, and
//      the method in python/agrad/_core.pyi;
//   4. tests: its entry in tests/cpp/test_engine.cpp's table test, and in the
//      operations the exactness fuzzers draw (tests/test_exactness.py).
// + and * (Add, Mul) and x ** k (Pow) are entries too, with two operands:
// their of_numbers, value, chain or derivative and gradient are read by the
// same passes.  The fused sum and dot (runs of additions, whose order is the
// point) are the engine's own.
#pragma once

#include <cmath>
#include <cstdint>

#include "agrad/number.hpp"

namespace agrad {

// X(Name, Value method, `_op` text, the method's docstring), one line an operation.
#define AGRAD_UNARY_OPS(X)                                             \
    X(Exp, "exp", "exp", "e ** self, as a Value.")                     \
    X(Log, "log", "log", "The natural logarithm of self, as a Value.") \
    X(Tanh, "tanh", "tanh", "tanh(self), as a Value.")                 \
    X(Relu, "relu", "ReLU", "max(self, 0), as a Value (op 'ReLU').")   \
    X(Sigmoid, "sigmoid", "sigmoid", "1 / (1 + exp(-self)), as a Value.")

enum class Op : uint8_t {
    Leaf,  // a parameter, an input or a constant
    Add,   // a + b
    Mul,   // a * b
    Pow,   // a ** k, k a number kept in the node
#define AGRAD_OP_ENTRY(name, ...) name,
    AGRAD_UNARY_OPS(AGRAD_OP_ENTRY)
#undef AGRAD_OP_ENTRY
        Sum,  // start + t0 + t1 + ... (start a number kept in the node)
    Dot,      // w0*x0 + w1*x1 + ..., children w0, x0, w1, x1, ...
    Custom,   // built by hand with Value(data, children, op): no local gradient
};

namespace ops {

// A value on a Python number: as Python's math functions do, an int is made
// a float first, and the result is a float.
template <class O>
Status float_of_number(Number x, Number* out) {
    double y = 0.0;
    Status s = O::value(x.as_double(), &y);
    if (s == Status::Ok) *out = Number::of_float(y);
    return s;
}

// In derivative<F>(x, y, &d): x is the operand's value, y the node's own
// (both as floats), and d the local derivative, which a backward pass
// multiplies by the node's gradient and adds into the operand's:
// F::add_mul(grad, d, g).  F is the pass's arithmetic (number.hpp's Arith:
// the hardware's, or with the NaN rule when a pass runs again with it).

// In gradient(b, x, y, g, &c): x is the operand's node, y the node's own, g
// its gradient (all nodes of the graph), and c the contribution to the
// operand's gradient, a node built with b (cpp/higher.cpp's Builder): its
// Value operations leaf (a number's node), mul (a * b), mul_number (a * k),
// power (a ** k),
// one_minus (1.0 - a, written as Python computes it) and positive (a > 0,
// recorded as a guard under agrad.compile).

struct Exp {
    static Status value(double x, double* y) {
        return math_exp(x, y);
    }  // OverflowError past ~709.78
    static Status of_number(Number x, Number* y) { return float_of_number<Exp>(x, y); }
    template <class F>
    static Status derivative(double, double y, double* d) {  // e^x is its own derivative
        *d = y;
        return Status::Ok;
    }
    template <class B>
    static Status gradient(B& b, typename B::Id, typename B::Id y, typename B::Id g,
                           typename B::Id* c) {  // y * g
        return b.mul(y, g, c);
    }
};

struct Log {
    static Status value(double x, double* y) { return math_log(x, y); }  // ValueError at x <= 0
    static Status of_number(Number x, Number* y) { return float_of_number<Log>(x, y); }
    template <class F>
    static Status derivative(double x, double, double* d) {  // 1 / x
        return divide(1.0, x, d);
    }
    template <class B>
    static Status gradient(B& b, typename B::Id x, typename B::Id, typename B::Id g,
                           typename B::Id* c) {
        // x ** -1 * g: Value has no division (a / b is a * b ** -1), so this
        // pow is within an ulp of derivative()'s 1.0 / x, not its bits
        typename B::Id inverse;
        Status s = b.power(x, Number::of_int(-1), &inverse);
        return s == Status::Ok ? b.mul(inverse, g, c) : s;
    }
};

struct Tanh {
    static Status value(double x, double* y) {
        *y = std::tanh(x);
        return Status::Ok;
    }
    static Status of_number(Number x, Number* y) { return float_of_number<Tanh>(x, y); }
    template <class F>
    static Status derivative(double, double y, double* d) {  // 1 - tanh(x)**2, from the output
        *d = 1.0 - F::mul(y, y);
        return Status::Ok;
    }
    template <class B>
    static Status gradient(B& b, typename B::Id, typename B::Id y, typename B::Id g,
                           typename B::Id* c) {  // (1.0 - y * y) * g
        typename B::Id square, local;
        Status s = b.mul(y, y, &square);
        if (s == Status::Ok) s = b.one_minus(square, &local);
        return s == Status::Ok ? b.mul(local, g, c) : s;
    }
};

struct Relu {
    static Status value(double x, double* y) {
        *y = x < 0.0 ? 0.0 : x;  // (a NaN stays itself, as max(x, 0) in pure does not ask)
        return Status::Ok;
    }
    static Status of_number(Number x, Number* y) {  // an int stays an int
        *y = relu(x);
        return Status::Ok;
    }
    template <class F>
    static Status derivative(double, double y, double* d) {  // 1 where the output is positive
        *d = y > 0.0 ? 1.0 : 0.0;
        return Status::Ok;
    }
    template <class B>
    static Status gradient(B& b, typename B::Id, typename B::Id y, typename B::Id g,
                           typename B::Id* c) {
        // g * 1.0 or g * 0.0: the slope is a constant of the gradient graph (its
        // own derivative is 0, as in PyTorch), the test behind it a guard
        return b.mul_number(g, Number::of_float(b.positive(y) ? 1.0 : 0.0), c);
    }
};

struct Sigmoid {
    static Status value(double x, double* y) {
        *y = sigmoid(x);
        return Status::Ok;
    }
    static Status of_number(Number x, Number* y) { return float_of_number<Sigmoid>(x, y); }
    template <class F>
    static Status derivative(double, double y, double* d) {  // s * (1 - s), from the output
        *d = F::mul(y, 1.0 - y);
        return Status::Ok;
    }
    template <class B>
    static Status gradient(B& b, typename B::Id, typename B::Id y, typename B::Id g,
                           typename B::Id* c) {  // y * (1.0 - y) * g
        typename B::Id rest, local;
        Status s = b.one_minus(y, &rest);
        if (s == Status::Ok) s = b.mul(y, rest, &local);
        return s == Status::Ok ? b.mul(local, g, c) : s;
    }
};

// The operations of two operands, + and *, and the power x ** k (k a number
// kept in the node).  Each has of_numbers (Python's number rules, in
// number.hpp: ints stay ints, an int result past 64 bits is an error) and its
// value on floats, with F's arithmetic (the NaN rule or the hardware's).
// Their derivative is read as chain<F>(acc, other, g): what an operand's
// gradient acc becomes, acc plus the derivative by that operand (1 for +,
// the other operand's value for *) times g; an inline constant operand's
// gradient is chain<F>(0.0, the node operand's value, g).  gradient(b, other,
// g, &c) is the same contribution as a Value operation, `other()` making the
// other operand's node only when it is read; a contribution that is g itself
// (+) is passed on as it is, as agrad.pure passes it.

struct Add {
    static constexpr const char* text = "+";
    static Status of_numbers(Number a, Number b, Number* r) { return add(a, b, r); }
    template <class F>
    static double value(double a, double b) {
        return F::add(a, b);
    }
    template <class F>
    static double chain(double acc, double, double g) {  // acc + g
        return F::add(acc, g);
    }
    template <class B, class Other>
    static Status gradient(B&, Other&&, typename B::Id g, typename B::Id* c) {  // g
        *c = g;
        return Status::Ok;
    }
};

struct Mul {
    static constexpr const char* text = "*";
    static Status of_numbers(Number a, Number b, Number* r) { return mul(a, b, r); }
    template <class F>
    static double value(double a, double b) {
        return F::mul(a, b);
    }
    template <class F>
    static double chain(double acc, double other, double g) {  // acc + other * g
        return F::add_mul(acc, other, g);
    }
    template <class B, class Other>
    static Status gradient(B& b, Other&& other, typename B::Id g,
                           typename B::Id* c) {  // other * g
        return b.mul(other(), g, c);
    }
};

// x ** k: Python's float_pow on floats (number.hpp: a product where that is
// provably pow's bits).  Its derivative k * x ** (k - 1) is made from
// p = x ** (k - 1) (power_below), which a kept schedule computes once for the
// pows of one base and one k; then grad += derivative(k, p) * g, as for a
// unary entry.
struct Pow {
    static Status of_numbers(Number x, Number k, Number* r) { return power(x, k, r); }
    static Status value(double x, double k, double* y) { return float_pow(x, k, y); }
    static Status power_below(double x, double k_minus_one, double* p) {
        return float_pow(x, k_minus_one, p);
    }
    template <class F>
    static double derivative(double k, double p) {
        return F::mul(k, p);
    }
    template <class B>
    static Status gradient(B& b, typename B::Id x, Number k, typename B::Id g, typename B::Id* c) {
        typename B::Id local;
        Status s;
        if (k.is_int ? k.i == 2 : k.f == 2.0) {
            // float(x) ** 1 is float(x) exactly: a product, not a pow to differentiate
            s = b.mul_number(x, Number::of_float(2.0), &local);
        } else {
            // k * float(x) ** (k - 1): a float exponent makes the power float(x)'s,
            // even for an int x; only a NaN k is the left operand (two NaNs give the
            // left one's)
            typename B::Id p;
            s = b.power(x, Number::of_float(exponent_minus_one(k)), &p);
            const double kf = k.as_double();
            if (s == Status::Ok)
                s = kf != kf ? b.mul(b.leaf(Number::of_float(kf)), p, &local)
                             : b.mul_number(p, Number::of_float(kf), &local);
        }
        return s == Status::Ok ? b.mul(local, g, c) : s;
    }
};

}  // namespace ops

// f(ops::Add{}) or f(ops::Mul{}) for Op::Add or Op::Mul (MathDomain for any
// other op, a bug of the caller).
template <class F>
Status with_binary(Op op, F&& f) {
    switch (op) {
        case Op::Add:
            return f(ops::Add{});
        case Op::Mul:
            return f(ops::Mul{});
        default:
            return Status::MathDomain;
    }
}

// Whether an op is an entry of the table.
inline bool is_unary(Op op) {
    switch (op) {
#define AGRAD_UNARY_CASE(name, ...) case Op::name:
        AGRAD_UNARY_OPS(AGRAD_UNARY_CASE)
#undef AGRAD_UNARY_CASE
        return true;
        default:
            return false;
    }
}

// f(ops::Name{}) for a unary op: how every pass reaches the table's entry.
// (An op that is no entry is a bug of the caller: MathDomain, never reached.)
template <class F>
Status with_unary(Op op, F&& f) {
    switch (op) {
#define AGRAD_UNARY_CALL(name, ...) \
    case Op::name:                  \
        return f(ops::name{});
        AGRAD_UNARY_OPS(AGRAD_UNARY_CALL)
#undef AGRAD_UNARY_CALL
        default:
            return Status::MathDomain;
    }
}

// The `_op` text of a unary op ("" for any other op).
inline const char* unary_op_text(Op op) {
    switch (op) {
#define AGRAD_UNARY_TEXT(name, method, text, ...) \
    case Op::name:                                \
        return text;
        AGRAD_UNARY_OPS(AGRAD_UNARY_TEXT)
#undef AGRAD_UNARY_TEXT
        default:
            return "";
    }
}

}  // namespace agrad
