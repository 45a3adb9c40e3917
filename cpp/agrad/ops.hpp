// The table of operations.  Each operation of one operand (exp, log, tanh,
// relu, sigmoid) is defined here once: its Value method and `_op` name, its
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
// + and * (Python's number rules, in number.hpp), ** k and the fused sum and
// dot (runs of additions, whose order is the point) are the engine's own.
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
// Value operations mul (a * b), mul_number (a * k), power (a ** k),
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

}  // namespace ops

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
