// The engine on its own, without Python: cpp/ is built to know nothing of the
// binding, so what it promises is checked here against its C++ API alone.
// The pytest suite covers the same ground through Python; this test is what
// tells an engine bug from a binding bug, and runs in seconds.
//
// No framework: each check prints its line when it fails, and the last line
// is "engine: N passed, N failed".  The exit code is non-zero on any failure.
// Built by CMake with -DAGRAD_BUILD_TESTS=ON and run by ctest.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "agrad/graph.hpp"
#include "agrad/program.hpp"
#include "agrad/replay.hpp"

using agrad::Graph;
using agrad::NodeId;
using agrad::Number;
using agrad::Op;
using agrad::Operand;
using agrad::Status;

namespace {

int passed = 0;
int failed = 0;

void check(bool ok, const char* what, const char* file, int line) {
    if (ok) {
        ++passed;
    } else {
        ++failed;
        std::printf("%s:%d: FAILED: %s\n", file, line, what);
    }
}
#define CHECK(cond) check((cond), #cond, __FILE__, __LINE__)

// Exact comparison: the engine promises Python's bits, so 0.1 + 0.2 must be
// 0.30000000000000004 and not merely close to it; -0.0 differs from 0.0.
bool same_bits(double a, double b) {
    uint64_t x, y;
    std::memcpy(&x, &a, sizeof x);
    std::memcpy(&y, &b, sizeof y);
    return x == y;
}
bool is_int(Number n, int64_t v) { return n.is_int && n.i == v; }
bool is_float(Number n, double v) { return !n.is_int && same_bits(n.f, v); }

Number I(int64_t v) { return Number::of_int(v); }
Number F(double v) { return Number::of_float(v); }

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

// -- Python's int and float rules, one operation at a time

void test_int_rules() {
    Number r;
    CHECK(agrad::add(I(2), I(3), &r) == Status::Ok && is_int(r, 5));
    CHECK(agrad::mul(I(10), I(10), &r) == Status::Ok && is_int(r, 100));
    // int op float is a float, as in Python
    CHECK(agrad::add(I(1), F(0.5), &r) == Status::Ok && is_float(r, 1.5));
    CHECK(agrad::add(F(0.1), F(0.2), &r) == Status::Ok && is_float(r, 0.30000000000000004));
    // a non-negative int power of an int stays an int; a negative one is a float
    CHECK(agrad::power(I(3), I(4), &r) == Status::Ok && is_int(r, 81));
    CHECK(agrad::power(I(2), I(-1), &r) == Status::Ok && is_float(r, 0.5));
    CHECK(agrad::power(I(2), I(62), &r) == Status::Ok && is_int(r, int64_t{1} << 62));

    // Outside 64 bits: an error, never a wrap-around or a silent float.
    r = I(7);
    CHECK(agrad::add(I(kMax), I(1), &r) == Status::IntOverflow);
    CHECK(is_int(r, 7));  // the result is left alone on an error
    CHECK(agrad::add(I(kMin), I(-1), &r) == Status::IntOverflow);
    CHECK(agrad::mul(I(int64_t{1} << 32), I(int64_t{1} << 31), &r) == Status::IntOverflow);
    CHECK(agrad::mul(I(-1), I(kMin), &r) == Status::IntOverflow);
    CHECK(agrad::negate(I(kMin), &r) == Status::IntOverflow);
    CHECK(agrad::power(I(2), I(63), &r) == Status::IntOverflow);
    CHECK(agrad::power(I(-2), I(63), &r) == Status::Ok && is_int(r, kMin));
    CHECK(agrad::add(I(kMax), I(kMin), &r) == Status::Ok && is_int(r, -1));
}

void test_float_rules() {
    Number r;
    // 0.0 ** -1 is Python's ZeroDivisionError; 0 ** 0 and nan ** 0 are 1
    CHECK(agrad::power(F(0.0), I(-1), &r) == Status::ZeroToNegative);
    CHECK(agrad::power(I(0), I(-1), &r) == Status::ZeroToNegative);
    CHECK(agrad::power(F(0.0), F(0.0), &r) == Status::Ok && is_float(r, 1.0));
    CHECK(agrad::power(F(std::nan("")), I(0), &r) == Status::Ok && is_float(r, 1.0));
    // a negative base to a fractional power would be complex in Python
    CHECK(agrad::power(F(-8.0), F(1.0 / 3.0), &r) == Status::FractionalOfNegative);
    CHECK(agrad::power(F(-2.0), F(3.0), &r) == Status::Ok && is_float(r, -8.0));
    CHECK(agrad::power(F(-2.0), F(2.0), &r) == Status::Ok && is_float(r, 4.0));
    // float ** float overflow is OverflowError; underflow to 0 is not an error
    CHECK(agrad::power(F(10.0), I(400), &r) == Status::PowRange);
    CHECK(agrad::power(F(10.0), I(-400), &r) == Status::Ok && is_float(r, 0.0));
    CHECK(agrad::power(F(1.0), F(std::nan("")), &r) == Status::Ok && is_float(r, 1.0));

    // math.exp: overflow of a finite argument is an error, exp(inf) is not
    double d = -1.0;
    CHECK(agrad::math_exp(1000.0, &d) == Status::MathRange);
    CHECK(agrad::math_exp(-1000.0, &d) == Status::Ok && same_bits(d, 0.0));
    CHECK(agrad::math_exp(std::numeric_limits<double>::infinity(), &d) == Status::Ok &&
          std::isinf(d));
    CHECK(agrad::math_exp(0.0, &d) == Status::Ok && same_bits(d, 1.0));
    // math.log: 0 and negatives are outside its domain; inf and nan pass through
    CHECK(agrad::math_log(0.0, &d) == Status::MathDomain);
    CHECK(agrad::math_log(-0.0, &d) == Status::MathDomain);
    CHECK(agrad::math_log(-1.0, &d) == Status::MathDomain);
    CHECK(agrad::math_log(1.0, &d) == Status::Ok && same_bits(d, 0.0));
    CHECK(agrad::math_log(std::numeric_limits<double>::infinity(), &d) == Status::Ok &&
          std::isinf(d));
    // -v is v * -1: the multiply instruction (and so Python, on x86-64) keeps
    // a nan's sign, where a compiler's rewrite to a negation would flip it
    CHECK(agrad::mul(F(std::nan("")), I(-1), &r) == Status::Ok && !r.is_int && std::isnan(r.f) &&
          !std::signbit(r.f));
}

// -- graphs

// Keeps a node, as the binding's Python object does: a new node has no
// reference, and one nobody retains is never freed.
NodeId kept(Graph& g, NodeId id) {
    g.retain(id);
    return id;
}

// Building blocks of the graphs below, whose operations cannot fail: a
// failure is reported, but a success is not counted as a check of its own
// (the million-node chain would otherwise be a million checks).
void built(Status s) {
    if (s != Status::Ok) check(false, "an operation of a test graph failed", __FILE__, __LINE__);
}

NodeId binary(Graph& g, Op op, NodeId a, NodeId b) {
    NodeId out = 0;
    built(g.binary(op, Operand::of_node(a), Operand::of_node(b), &out));
    return out;
}

NodeId with_number(Graph& g, Op op, NodeId a, Number k) {
    NodeId out = 0;
    built(g.binary(op, Operand::of_node(a), Operand::of_number(k), &out));
    return out;
}

// The README's example: L = (a*b + c) * f.
void test_readme_graph() {
    Graph g;
    NodeId a = kept(g, g.leaf(F(2.0)));
    NodeId b = kept(g, g.leaf(F(-3.0)));
    NodeId c = kept(g, g.leaf(F(10.0)));
    NodeId f = kept(g, g.leaf(F(-2.0)));
    NodeId e = kept(g, binary(g, Op::Mul, a, b));
    NodeId d = kept(g, binary(g, Op::Add, e, c));
    NodeId L = kept(g, binary(g, Op::Mul, d, f));
    CHECK(is_float(g.value(L), -8.0));
    CHECK(g.backward(L) == Status::Ok);
    CHECK(same_bits(g.grad(a), 6.0));
    CHECK(same_bits(g.grad(b), -4.0));
    CHECK(same_bits(g.grad(c), -2.0));
    CHECK(same_bits(g.grad(f), 4.0));
    CHECK(same_bits(g.grad(e), -2.0));
    CHECK(same_bits(g.grad(L), 1.0));

    // backward() zeroes the graph first: a second call gives the same
    // gradients, not twice them, whatever the gradients were set to between.
    g.set_grad(a, 100.0);
    g.set_grad(d, 100.0);
    CHECK(g.backward(L) == Status::Ok);
    CHECK(same_bits(g.grad(a), 6.0));
    CHECK(same_bits(g.grad(b), -4.0));
    CHECK(same_bits(g.grad(d), -2.0));

    // A leaf outside the graph keeps its gradient; a node used twice gets both
    // contributions (a*a: 2a).
    NodeId outside = kept(g, g.leaf(F(1.0)));
    g.set_grad(outside, 42.0);
    NodeId sq = kept(g, binary(g, Op::Mul, a, a));
    CHECK(g.backward(sq) == Status::Ok);
    CHECK(same_bits(g.grad(a), 4.0));
    CHECK(same_bits(g.grad(outside), 42.0));
    CHECK(same_bits(g.grad(f), 4.0));  // not in sq's graph: left as L's pass set it
}

// Each local gradient, against the formula agrad.pure writes.
void test_unary_and_power_gradients() {
    Graph g;
    NodeId x = kept(g, g.leaf(F(0.5)));
    NodeId out = 0;
    CHECK(g.unary(Op::Tanh, x, &out) == Status::Ok);
    NodeId t = kept(g, out);
    CHECK(g.backward(t) == Status::Ok);
    double th = std::tanh(0.5);
    CHECK(same_bits(g.grad(x), (1.0 - th * th) * 1.0));

    CHECK(g.unary(Op::Exp, x, &out) == Status::Ok);
    NodeId ex = kept(g, out);
    CHECK(g.backward(ex) == Status::Ok);
    CHECK(same_bits(g.grad(x), std::exp(0.5)));

    CHECK(g.power(x, I(3), &out) == Status::Ok);
    NodeId cube = kept(g, out);
    CHECK(is_float(g.value(cube), 0.125));
    CHECK(g.backward(cube) == Status::Ok);
    CHECK(same_bits(g.grad(x), 3.0 * 0.25));

    NodeId n = kept(g, g.leaf(I(-3)));
    CHECK(g.unary(Op::Relu, n, &out) == Status::Ok);
    NodeId r = kept(g, out);
    CHECK(is_int(g.value(r), 0));
    CHECK(g.backward(r) == Status::Ok);
    CHECK(same_bits(g.grad(n), 0.0));

    // Errors of an operation are statuses, and a failed operation leaves no node.
    NodeId big = kept(g, g.leaf(F(1000.0)));
    NodeId zero = kept(g, g.leaf(F(0.0)));
    NodeId huge = kept(g, g.leaf(I(kMax)));
    size_t live = g.live_nodes();
    CHECK(g.unary(Op::Exp, big, &out) == Status::MathRange);
    CHECK(g.unary(Op::Log, zero, &out) == Status::MathDomain);
    CHECK(g.power(zero, I(-1), &out) == Status::ZeroToNegative);
    CHECK(g.binary(Op::Add, Operand::of_node(huge), Operand::of_number(I(1)), &out) ==
          Status::IntOverflow);
    CHECK(g.binary(Op::Mul, Operand::of_number(I(2)), Operand::of_node(huge), &out) ==
          Status::IntOverflow);
    CHECK(g.live_nodes() == live);

    // A local gradient that fails (log's 1/x, once x is set to 0) is an error
    // of backward, and leaves the graph's gradients at 0.
    NodeId y = kept(g, g.leaf(F(2.0)));
    CHECK(g.unary(Op::Log, y, &out) == Status::Ok);
    NodeId lg = kept(g, out);
    CHECK(g.backward(lg) == Status::Ok && same_bits(g.grad(y), 0.5));
    g.set_value(y, F(0.0));
    CHECK(g.backward(lg) == Status::FloatDivisionByZero);
    CHECK(same_bits(g.grad(y), 0.0) && same_bits(g.grad(lg), 0.0));
}

// Nodes are freed when their last reference goes, children with them.
void test_refcount_freeing() {
    Graph g;
    const size_t before = g.live_nodes();
    NodeId a = kept(g, g.leaf(F(1.5)));
    NodeId b = kept(g, g.leaf(F(2.0)));
    NodeId loss = a;
    for (int i = 0; i < 100; ++i) {
        NodeId m = binary(g, Op::Mul, loss, b);
        loss = with_number(g, Op::Add, m, F(0.25));
    }
    g.retain(loss);
    CHECK(g.live_nodes() == before + 2 + 200);
    CHECK(g.backward(loss) == Status::Ok);
    // Dropping the loss frees the graph behind it, but not the leaves still held.
    g.release(loss);
    CHECK(g.live_nodes() == before + 2);
    g.release(b);
    g.release(a);
    CHECK(g.live_nodes() == before);

    // Freed nodes are reused: a second graph of the same shape grows nothing.
    const size_t capacity = g.capacity();
    NodeId c = kept(g, g.leaf(F(1.0)));
    NodeId s = c;
    for (int i = 0; i < 150; ++i) s = binary(g, Op::Add, s, c);
    g.retain(s);
    g.release(s);
    g.release(c);
    CHECK(g.live_nodes() == before);
    CHECK(g.capacity() == capacity);

    // A label goes with its node.
    NodeId l = kept(g, g.leaf(F(1.0)));
    g.set_label(l, "w");
    CHECK(g.label(l) == "w");
    g.release(l);
    NodeId reused = kept(g, g.leaf(F(1.0)));
    CHECK(g.label(reused).empty());
    g.release(reused);
    CHECK(g.live_nodes() == before);
}

// The values a fused node and its chain take, chosen so that the order of the
// additions shows in the bits: 1e16 + 1.0 loses the 1.0 unless it comes later.
const double kTermValues[] = {0.1, 1e16, 0.7, -1e16, 3.0, 0.2, 1.0 / 3.0};
constexpr size_t kTerms = sizeof kTermValues / sizeof kTermValues[0];

// sum(terms) as Python's builtin computes it: 0 + t0 (the binding puts the
// number second: t0 + 0), then + t1, + t2, ...
NodeId chain_sum(Graph& g, const std::vector<NodeId>& terms) {
    NodeId s = with_number(g, Op::Add, terms[0], I(0));
    for (size_t i = 1; i < terms.size(); ++i) s = binary(g, Op::Add, s, terms[i]);
    return s;
}

// The loss of both: the total times a shared leaf, plus the shared leaf's
// square, so that the shared leaf's gradient adds up contributions in the
// order of the backward pass, and each term's gradient carries those bits on.
void test_fused_sum_matches_chain() {
    double grads[2][kTerms + 1];
    double values[2];
    for (int fused = 0; fused < 2; ++fused) {
        Graph g;
        NodeId shared = kept(g, g.leaf(F(1.1)));
        std::vector<NodeId> leaves, terms;
        for (double v : kTermValues) {
            NodeId x = kept(g, g.leaf(F(v)));
            leaves.push_back(x);
            terms.push_back(binary(g, Op::Mul, x, shared));  // terms share `shared`
        }
        NodeId total = 0;
        if (fused) {
            std::vector<Operand> ops;
            for (NodeId t : terms) ops.push_back(Operand::of_node(t));
            CHECK(g.sum(ops.data(), ops.size(), I(0), &total) == Status::Ok);
            CHECK(g.op(total) == Op::Sum);
        } else {
            total = chain_sum(g, terms);
        }
        NodeId scaled = binary(g, Op::Mul, total, shared);
        NodeId loss = kept(g, binary(g, Op::Add, scaled, binary(g, Op::Mul, shared, shared)));
        CHECK(g.backward(loss) == Status::Ok);
        values[fused] = g.value(loss).f;
        for (size_t i = 0; i < kTerms; ++i) grads[fused][i] = g.grad(leaves[i]);
        grads[fused][kTerms] = g.grad(shared);
    }
    CHECK(same_bits(values[0], values[1]));
    bool all_same = true;
    for (size_t i = 0; i <= kTerms; ++i) all_same &= same_bits(grads[0][i], grads[1][i]);
    CHECK(all_same);
}

// dot(weights, inputs) against sum(w * x ...), with the inputs as plain
// numbers, as the chapter's model passes its data.
void test_fused_dot_matches_chain() {
    const double inputs[] = {0.5, -1e16, 2.0, 1e16, 0.1, -3.0, 7.0};
    static_assert(sizeof inputs / sizeof inputs[0] == kTerms, "one input per weight");
    double grads[2][kTerms];
    double values[2];
    for (int fused = 0; fused < 2; ++fused) {
        Graph g;
        std::vector<NodeId> weights;
        for (double v : kTermValues) weights.push_back(kept(g, g.leaf(F(v))));
        NodeId total = 0;
        if (fused) {
            std::vector<Operand> w, x;
            for (size_t i = 0; i < kTerms; ++i) {
                w.push_back(Operand::of_node(weights[i]));
                x.push_back(Operand::of_number(F(inputs[i])));
            }
            CHECK(g.dot(w.data(), x.data(), kTerms, &total) == Status::Ok);
            CHECK(g.op(total) == Op::Dot);
        } else {
            std::vector<NodeId> products;
            for (size_t i = 0; i < kTerms; ++i)
                products.push_back(with_number(g, Op::Mul, weights[i], F(inputs[i])));
            total = chain_sum(g, products);
        }
        // squared, so each weight's gradient carries the total's bits
        NodeId out = 0;
        CHECK(g.power(total, I(2), &out) == Status::Ok);
        NodeId loss = kept(g, out);
        CHECK(g.backward(loss) == Status::Ok);
        values[fused] = g.value(loss).f;
        for (size_t i = 0; i < kTerms; ++i) grads[fused][i] = g.grad(weights[i]);
    }
    CHECK(same_bits(values[0], values[1]));
    bool all_same = true;
    for (size_t i = 0; i < kTerms; ++i) all_same &= same_bits(grads[0][i], grads[1][i]);
    CHECK(all_same);
}

// Where each term's share of a fused node happens in the backward pass, when
// a term's node is also inside a later term: sum(u, v) and dot((u, v), (1, 1))
// with v = u * 1e16 + u * -1e16.  The chain hands u the contributions from
// inside v first, then its own term's: (0 + -1e16 + 1e16) + 1 = 1.  Handing
// out the terms' shares before v's subtree would give (0 + 1 + -1e16) + 1e16,
// which is 0.
double grad_of_u_in_later_term(bool dot, bool fused) {
    Graph g;
    NodeId u = kept(g, g.leaf(F(1.0)));
    NodeId v = kept(g, binary(g, Op::Add, with_number(g, Op::Mul, u, F(1e16)),
                              with_number(g, Op::Mul, u, F(-1e16))));
    NodeId total = 0;
    if (fused && dot) {
        Operand w[] = {Operand::of_node(u), Operand::of_node(v)};
        Operand x[] = {Operand::of_number(F(1.0)), Operand::of_number(F(1.0))};
        CHECK(g.dot(w, x, 2, &total) == Status::Ok);
    } else if (fused) {
        Operand terms[] = {Operand::of_node(u), Operand::of_node(v)};
        CHECK(g.sum(terms, 2, I(0), &total) == Status::Ok);
    } else if (dot) {
        total = chain_sum(g,
                          {with_number(g, Op::Mul, u, F(1.0)), with_number(g, Op::Mul, v, F(1.0))});
    } else {
        total = chain_sum(g, {u, v});
    }
    g.retain(total);
    CHECK(g.backward(total) == Status::Ok);
    return g.grad(u);
}

void test_fused_term_inside_later_term() {
    for (bool dot : {false, true}) {
        CHECK(same_bits(grad_of_u_in_later_term(dot, false), 1.0));
        CHECK(same_bits(grad_of_u_in_later_term(dot, true), 1.0));
    }
}

// The constant of `w * 2.5` lives inside its parent until asked for; then it
// is an ordinary leaf with the value and the gradient it had.
void test_inline_constants() {
    Graph g;
    const size_t before = g.live_nodes();
    NodeId w = kept(g, g.leaf(F(3.0)));
    NodeId p = kept(g, with_number(g, Op::Mul, w, F(2.5)));
    CHECK(g.live_nodes() == before + 2);  // no node for the 2.5
    CHECK(g.child_count(p) == 1);
    CHECK(g.backward(p) == Status::Ok);
    CHECK(same_bits(g.grad(w), 2.5));
    g.materialize_constants(p);
    CHECK(g.child_count(p) == 2);
    CHECK(g.live_nodes() == before + 3);
    NodeId k = g.child(p, 1);
    CHECK(g.child(p, 0) == w);
    CHECK(g.op(k) == Op::Leaf);
    CHECK(is_float(g.value(k), 2.5));
    CHECK(same_bits(g.grad(k), 3.0));  // d(w * 2.5)/d(2.5) = w
    // After that it is a child like any other: backward reaches it.
    g.set_grad(k, 0.0);
    CHECK(g.backward(p) == Status::Ok);
    CHECK(same_bits(g.grad(k), 3.0) && same_bits(g.grad(w), 2.5));
    g.materialize_constants(p);  // a second call adds nothing
    CHECK(g.child_count(p) == 2 && g.live_nodes() == before + 3);

    // An int constant stays an int; a sum's constant terms become leaves too.
    NodeId q = kept(g, with_number(g, Op::Add, w, I(1)));
    CHECK(g.backward(q) == Status::Ok);
    g.materialize_constants(q);
    CHECK(is_int(g.value(g.child(q, 1)), 1));
    CHECK(same_bits(g.grad(g.child(q, 1)), 1.0));

    Operand terms[] = {Operand::of_node(w), Operand::of_number(I(4)), Operand::of_number(F(0.5))};
    NodeId s = 0;
    CHECK(g.sum(terms, 3, I(0), &s) == Status::Ok);
    g.retain(s);
    CHECK(is_float(g.value(s), 7.5));
    const size_t live = g.live_nodes();
    CHECK(g.backward(s) == Status::Ok);
    g.materialize_constants(s);
    CHECK(g.live_nodes() == live + 2);
    // Read through child_count, as the binding does: GCC's -Warray-bounds
    // takes a literal child(s, 2) for an index into a two-child node.
    std::vector<NodeId> kids;
    for (size_t i = 0; i < g.child_count(s); ++i) kids.push_back(g.child(s, i));
    CHECK(kids.size() == 3 && kids[0] == w);
    CHECK(is_int(g.value(kids[1]), 4) && same_bits(g.grad(kids[1]), 1.0));
    CHECK(is_float(g.value(kids[2]), 0.5) && same_bits(g.grad(kids[2]), 1.0));

    // The materialized constants belong to their parent and go with it.
    g.release(s);
    g.release(q);
    g.release(p);
    g.release(w);
    CHECK(g.live_nodes() == before);
}

// A custom node (Value(data, children, op)) has children but no local gradient.
void test_custom_node() {
    Graph g;
    NodeId a = kept(g, g.leaf(F(1.0)));
    NodeId children[] = {a, a};
    NodeId c = kept(g, g.custom(F(5.0), children, 2, "my op"));
    CHECK(g.op_name(c) == "my op");
    CHECK(g.child_count(c) == 2);
    g.set_grad(a, 9.0);
    CHECK(g.backward(c) == Status::Ok);
    CHECK(same_bits(g.grad(c), 1.0) && same_bits(g.grad(a), 0.0));
    g.release(c);
    g.release(a);
    CHECK(g.live_nodes() == 0);
}

// A million nodes deep: built, differentiated and freed by loops.  A
// recursive search or free would need far more stack than a thread has.
void test_long_chain() {
    constexpr int kDepth = 1000000;
    Graph g;
    NodeId x = kept(g, g.leaf(F(1.0)));
    NodeId y = x;
    for (int i = 0; i < kDepth; ++i) y = binary(g, Op::Add, y, x);  // y = (i+2) * x
    g.retain(y);
    CHECK(g.live_nodes() == static_cast<size_t>(kDepth) + 1);
    CHECK(is_float(g.value(y), kDepth + 1.0));
    CHECK(g.backward(y) == Status::Ok);
    CHECK(same_bits(g.grad(x), kDepth + 1.0));
    g.release(y);
    CHECK(g.live_nodes() == 1);
    g.release(x);
    CHECK(g.live_nodes() == 0);
}

// A kept backward schedule (what a replayed root uses) against the search
// backward() makes every time: the same gradients, bit for bit, for new
// leaf values, after a constant became a node, after a failing pass.
struct ScheduleGraph {
    std::vector<NodeId> leaves;  // u, v, the exponent's base w
    std::vector<NodeId> nodes;   // everything made, in order, for recompute
    NodeId root = 0;
    NodeId product = 0;  // u * 1e16: its constant is materialized below
};

ScheduleGraph build_schedule_graph(Graph& g) {
    ScheduleGraph s;
    NodeId u = kept(g, g.leaf(F(1.0)));
    NodeId v = kept(g, g.leaf(F(0.5)));
    NodeId w = kept(g, g.leaf(F(2.0)));
    s.leaves = {u, v, w};
    auto made = [&](NodeId id) {
        s.nodes.push_back(kept(g, id));
        return id;
    };
    s.product = made(with_number(g, Op::Mul, u, F(1e16)));
    NodeId t = made(binary(g, Op::Add, s.product, made(with_number(g, Op::Mul, u, F(-1e16)))));
    Operand terms[] = {Operand::of_node(u), Operand::of_node(t), Operand::of_number(F(0.25))};
    NodeId total = 0;
    built(g.sum(terms, 3, I(0), &total));
    made(total);
    Operand ws[] = {Operand::of_node(v), Operand::of_node(total)};
    Operand xs[] = {Operand::of_node(u), Operand::of_number(F(3.0))};
    NodeId d = 0;
    built(g.dot(ws, xs, 2, &d));
    made(d);
    NodeId p = 0;
    built(g.power(w, F(0.5), &p));  // its gradient fails when w is 0
    made(p);
    NodeId e = 0;
    built(g.unary(Op::Tanh, made(binary(g, Op::Mul, d, p)), &e));
    made(e);
    s.root = made(binary(g, Op::Mul, e, v));
    return s;
}

void test_kept_schedule() {
    Graph plain, kept_graph;
    ScheduleGraph a = build_schedule_graph(plain);
    ScheduleGraph b = build_schedule_graph(kept_graph);
    kept_graph.keep_schedule(b.root);
    CHECK(kept_graph.keeps_schedule(b.root) && !plain.keeps_schedule(a.root));
    auto same_pass = [&](const char* when) {
        Status sa = plain.backward(a.root);
        Status sb = kept_graph.backward(b.root);
        bool same = sa == sb;
        for (size_t i = 0; i < a.leaves.size(); ++i)
            same &= same_bits(plain.grad(a.leaves[i]), kept_graph.grad(b.leaves[i]));
        for (size_t i = 0; i < a.nodes.size(); ++i)
            same &= same_bits(plain.grad(a.nodes[i]), kept_graph.grad(b.nodes[i]));
        if (!same) std::printf("kept schedule differs: %s\n", when);
        CHECK(same);
        return sa;
    };
    auto set_leaves = [&](double u, double v, double w) {
        for (Graph* g : {&plain, &kept_graph}) {
            const ScheduleGraph& s = g == &plain ? a : b;
            g->set_value(s.leaves[0], F(u));
            g->set_value(s.leaves[1], F(v));
            g->set_value(s.leaves[2], F(w));
            for (NodeId id : s.nodes) built(g->recompute(id));
        }
    };
    CHECK(same_pass("first") == Status::Ok);
    CHECK(same_bits(kept_graph.grad(b.leaves[0]), plain.grad(a.leaves[0])));
    set_leaves(-0.3, 2.0, 0.7);
    kept_graph.set_grad(b.leaves[0], 99.0);  // zeroed again by the kept schedule
    CHECK(same_pass("new values") == Status::Ok);
    // w = 0: the power's gradient fails, and every gradient is left at 0
    set_leaves(0.1, 1.0, 0.0);
    CHECK(same_pass("failing") == Status::ZeroToNegative);
    CHECK(same_bits(kept_graph.grad(b.leaves[0]), 0.0));
    set_leaves(0.2, -1.0, 3.0);
    CHECK(same_pass("after failing") == Status::Ok);
    // a constant becomes a leaf node: it must be reached (and zeroed) too
    plain.materialize_constants(a.product);
    kept_graph.materialize_constants(b.product);
    NodeId k = kept_graph.child(b.product, 1);
    kept_graph.set_grad(k, 7.0);
    plain.set_grad(plain.child(a.product, 1), 7.0);
    CHECK(same_pass("materialized") == Status::Ok);
    CHECK(same_bits(kept_graph.grad(k), plain.grad(plain.child(a.product, 1))));
    CHECK(!same_bits(kept_graph.grad(k), 7.0));
    // forgotten, then kept again; and a freed root takes its schedule with it
    kept_graph.forget_schedule(b.root);
    CHECK(!kept_graph.keeps_schedule(b.root));
    CHECK(same_pass("forgotten") == Status::Ok);
    kept_graph.keep_schedule(b.root);
    const size_t live = kept_graph.live_nodes();
    kept_graph.release(b.root);  // the test's own reference: `made` kept one
    kept_graph.release(b.root);
    CHECK(kept_graph.live_nodes() == live - 1);
    NodeId reused = kept(kept_graph, kept_graph.leaf(F(1.0)));  // takes the freed id
    CHECK(reused == b.root && !kept_graph.keeps_schedule(reused));
    CHECK(kept_graph.backward(reused) == Status::Ok && same_bits(kept_graph.grad(reused), 1.0));
}

// Two NaNs give the left operand's NaN, quieted; one NaN or none, the
// hardware's result.  Checked on the number functions, on a graph's forward
// and backward passes (eager, kept schedule) and on the replay.
double bits_double(uint64_t bits) {
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
}

void test_nan_rule() {
    const double plus = bits_double(0x7FF8000000000000u), minus = bits_double(0xFFF8000000000000u);
    const double signalling = bits_double(0xFFF0000000000005u);  // sign set, payload 5
    const double quieted = bits_double(0xFFF8000000000005u);
    CHECK(same_bits(agrad::add(plus, minus), plus) && same_bits(agrad::add(minus, plus), minus));
    CHECK(same_bits(agrad::mul(plus, minus), plus) && same_bits(agrad::mul(minus, plus), minus));
    CHECK(same_bits(agrad::add(signalling, plus), quieted));
    CHECK(same_bits(agrad::mul(plus, signalling), plus));
    CHECK(same_bits(agrad::add(2.0, signalling), quieted));  // one NaN: the hardware's
    CHECK(same_bits(agrad::mul(signalling, 2.0), quieted));
    CHECK(same_bits(agrad::add(0.1, 0.2), 0.30000000000000004));
    Number r;
    CHECK(agrad::mul(F(minus), F(plus), &r) == Status::Ok && is_float(r, minus));
    CHECK(agrad::add(F(plus), F(minus), &r) == Status::Ok && is_float(r, plus));

    // s = c + w * x with every value a NaN: eager, kept schedule, replay
    Graph g;
    std::vector<NodeId> log;
    NodeId c = kept(g, g.leaf(F(minus))), w = kept(g, g.leaf(F(plus)));
    NodeId x = kept(g, g.leaf(F(minus)));
    g.begin_recording(&log);
    NodeId m = binary(g, Op::Mul, w, x);
    NodeId s = binary(g, Op::Add, c, m);
    Operand terms[] = {Operand::of_node(s), Operand::of_node(w)};
    NodeId total = 0, d = 0;
    built(g.sum(terms, 2, F(minus), &total));  // start + s is s + start
    Operand ws[] = {Operand::of_number(F(minus)), Operand::of_node(w)};
    Operand xs[] = {Operand::of_node(total), Operand::of_node(x)};
    built(g.dot(ws, xs, 2, &d));  // k * total is total * k
    g.end_recording();
    CHECK(is_float(g.value(m), plus) && is_float(g.value(s), minus));
    CHECK(is_float(g.value(total), minus) && is_float(g.value(d), minus));
    CHECK(g.backward(d) == Status::Ok);
    const double eager_grads[] = {g.grad(c), g.grad(w), g.grad(x), g.grad(m), g.grad(s)};
    std::vector<NodeId> steps;
    for (NodeId id : log)
        if (g.op(id) != Op::Leaf) steps.push_back(id);
    agrad::Replay replay;
    replay.build(g, steps);
    g.keep_schedule(d);
    for (int call = 0; call < 3; ++call) {
        for (NodeId id : steps) g.set_value(id, F(0.0));
        if (!replay.run(g))
            for (NodeId id : steps) built(g.recompute(id));
        CHECK(is_float(g.value(m), plus) && is_float(g.value(s), minus));
        CHECK(is_float(g.value(total), minus) && is_float(g.value(d), minus));
        CHECK(g.backward(d) == Status::Ok);
        const double grads[] = {g.grad(c), g.grad(w), g.grad(x), g.grad(m), g.grad(s)};
        bool same = true;
        for (int i = 0; i < 5; ++i) same &= same_bits(grads[i], eager_grads[i]);
        CHECK(same);
    }
    // x's gradient: w * 1 through the dot (+nan), then w * (its gradient
    // through s, -nan): +nan + -nan, the left one
    CHECK(same_bits(g.grad(x), plus));
    for (NodeId id : log) g.release(id);
}

}  // namespace

// A recording takes freed nodes in ascending ids, whatever order they were
// freed in, and loses none.
void test_recording_takes_ascending_ids() {
    Graph g;
    std::vector<NodeId> ids;
    for (int i = 0; i < 200; ++i) {
        ids.push_back(g.leaf(F(i)));
        g.retain(ids.back());
    }
    for (int i = 0; i < 200; ++i) g.release(ids[(i * 7) % 200]);  // 7 and 200 are coprime
    std::vector<NodeId> log;
    g.begin_recording(&log);
    for (int i = 0; i < 200; ++i) g.leaf(F(i));
    g.end_recording();
    bool ascending = log.size() == 200;
    for (size_t i = 1; i < log.size(); ++i) ascending = ascending && log[i] == log[i - 1] + 1;
    CHECK(ascending);
    CHECK(g.live_nodes() == 200);
    for (NodeId id : log) g.release(id);
}

// A model's weights, leaves made one at a time after a large graph was freed
// in a scattered order, take neighbouring ids (the free list is sorted once
// enough was freed); after a small release they pop as they were freed, so
// that the sort is paid for by the frees it waited for.
void test_leaves_after_a_large_release_are_neighbours() {
    Graph g;
    const int n = 1 << 17;  // above the frees a sort waits for
    std::vector<NodeId> ids;
    for (int i = 0; i < n; ++i) {
        ids.push_back(g.leaf(F(i)));
        g.retain(ids.back());
    }
    for (int i = 0; i < n; ++i) g.release(ids[(i * 7919) % n]);  // 7919 is prime
    std::vector<NodeId> weights;
    for (int i = 0; i < 300; ++i) weights.push_back(g.leaf(F(i)));
    bool neighbours = true;
    for (size_t i = 1; i < weights.size(); ++i)
        neighbours = neighbours && weights[i] == weights[i - 1] + 1;
    CHECK(neighbours);
    for (NodeId id : weights) {
        g.retain(id);
        g.release(id);
    }
    // a small release: its ids pop last freed first, unsorted
    std::vector<NodeId> few;
    for (int i = 0; i < 8; ++i) {
        few.push_back(g.leaf(F(i)));
        g.retain(few.back());
    }
    const int order[8] = {3, 0, 6, 1, 7, 2, 5, 4};
    for (int k : order) g.release(few[static_cast<size_t>(k)]);
    bool popped_as_freed = true;
    for (int j = 7; j >= 0; --j)
        popped_as_freed = popped_as_freed && g.leaf(F(j)) == few[static_cast<size_t>(order[j])];
    CHECK(popped_as_freed);
}

// Replay's decoded forward pass gives recompute's bits, constants ahead of a
// fused node's first node term included, and declines when a number read is
// an int.
void test_replay_matches_recompute() {
    Graph g;
    NodeId w = g.leaf(F(0.3));
    g.retain(w);
    std::vector<NodeId> log;
    g.begin_recording(&log);
    NodeId x = g.leaf(F(1.7)), y = g.leaf(F(-0.4));
    NodeId a = 0, b = 0, c = 0, d = 0, e = 0;
    CHECK(g.binary(Op::Mul, Operand::of_node(w), Operand::of_node(x), &a) == Status::Ok);
    CHECK(g.binary(Op::Add, Operand::of_node(a), Operand::of_number(I(3)), &b) == Status::Ok);
    Operand terms[] = {Operand::of_number(I(1)), Operand::of_number(I(2)), Operand::of_node(b),
                       Operand::of_number(F(0.1))};
    CHECK(g.sum(terms, 4, I(0), &c) == Status::Ok);
    Operand ws[] = {Operand::of_number(I(2)), Operand::of_node(c), Operand::of_number(F(1.5))};
    Operand xs[] = {Operand::of_number(I(3)), Operand::of_node(y), Operand::of_number(I(2))};
    CHECK(g.dot(ws, xs, 3, &d) == Status::Ok);
    CHECK(g.unary(Op::Tanh, d, &e) == Status::Ok);
    g.end_recording();
    std::vector<NodeId> steps;
    for (NodeId id : log)
        if (g.op(id) != Op::Leaf) steps.push_back(id);
    agrad::Replay replay;
    replay.build(g, steps);
    CHECK(replay.built_for(g));
    g.set_value(x, F(-2.25));
    g.set_value(y, F(0.625));
    CHECK(replay.run(g));
    std::vector<Number> fast;
    for (NodeId id : steps) fast.push_back(g.value(id));
    for (NodeId id : steps) CHECK(g.recompute(id) == Status::Ok);
    for (size_t i = 0; i < steps.size(); ++i) {
        Number n = g.value(steps[i]);
        CHECK(!fast[i].is_int && !n.is_int && std::memcmp(&fast[i].f, &n.f, sizeof(double)) == 0);
    }
    g.set_value(w, I(2));  // an int read: recompute's rules are needed
    CHECK(!replay.run(g));
    for (NodeId id : log) g.release(id);
    g.release(w);
}

// An operation repeated on the same operands (a softmax's s ** -1, four
// times) is computed once by the replay and copied, and pow's local
// derivative once by a kept schedule; each node still passes its own
// gradient down.  Against recompute and a plain graph's backward, bit for
// bit, with the errors at the same node: s = 0 fails the shared s ** -1
// forward, w = 0 the shared w ** 0.5 backward (0 ** -0.5).
struct Repeats {
    NodeId x = 0, y = 0, w = 0;  // leaves
    NodeId root = 0;
    std::vector<NodeId> steps;  // the nodes made by operations, in order
};

Repeats build_repeats(Graph& g) {
    Repeats r;
    r.x = kept(g, g.leaf(F(0.5)));
    r.y = kept(g, g.leaf(F(1.25)));
    r.w = kept(g, g.leaf(F(2.0)));
    std::vector<NodeId> log;
    g.begin_recording(&log);
    auto power = [&](NodeId base, Number k) {
        NodeId out = 0;
        built(g.power(base, k, &out));
        return out;
    };
    auto unary = [&](Op op, NodeId a) {
        NodeId out = 0;
        built(g.unary(op, a, &out));
        return out;
    };
    NodeId s = binary(g, Op::Add, r.x, r.y);
    // the same s ** -1 four times (an int -1 and a float -1.0 alike), s ** 2 twice
    NodeId p[] = {power(s, I(-1)), power(s, I(-1)),  power(s, F(-1.0)),  power(s, I(-1)),
                  power(s, I(2)),  power(s, F(2.0)), power(r.w, F(0.5)), power(r.w, F(0.5))};
    NodeId e1 = unary(Op::Exp, r.x), e2 = unary(Op::Exp, r.x);
    NodeId m1 = binary(g, Op::Mul, r.x, r.y), m2 = binary(g, Op::Mul, r.x, r.y);
    NodeId m3 = binary(g, Op::Mul, r.y, r.x);  // the other order: not the same
    NodeId k1 = with_number(g, Op::Add, r.x, F(0.0)), k2 = with_number(g, Op::Add, r.x, F(-0.0));
    Operand terms[] = {Operand::of_node(p[0]), Operand::of_node(p[1]), Operand::of_node(p[2]),
                       Operand::of_node(p[3]), Operand::of_node(p[4]), Operand::of_node(p[5]),
                       Operand::of_node(p[6]), Operand::of_node(p[7]), Operand::of_node(e1),
                       Operand::of_node(e2),   Operand::of_node(m1),   Operand::of_node(m2),
                       Operand::of_node(m3),   Operand::of_node(k1),   Operand::of_node(k2)};
    Operand weights[15];
    for (int i = 0; i < 15; ++i) weights[i] = Operand::of_number(F(1.0 + 0.125 * i));
    built(g.dot(weights, terms, 15, &r.root));
    g.end_recording();
    for (NodeId id : log)
        if (g.op(id) != Op::Leaf) r.steps.push_back(id);
    kept(g, r.root);
    return r;
}

void test_repeated_operations_shared() {
    Graph plain, g;
    Repeats a = build_repeats(plain), b = build_repeats(g);
    g.keep_schedule(b.root);
    agrad::Replay replay;
    replay.build(g, b.steps);
    // sets the leaves; then the replay against recompute, then both backward passes
    auto same = [&](double x, double y, double w, Status forward, Status backward) {
        for (Graph* graph : {&plain, &g}) {
            const Repeats& r = graph == &plain ? a : b;
            graph->set_value(r.x, F(x));
            graph->set_value(r.y, F(y));
            graph->set_value(r.w, F(w));
        }
        const bool replayed = replay.run(g);
        Status recomputed = Status::Ok;
        for (NodeId id : a.steps)
            if ((recomputed = plain.recompute(id)) != Status::Ok) break;
        CHECK(recomputed == forward && replayed == (forward == Status::Ok));
        if (!replayed) return;
        bool equal = true;
        for (size_t i = 0; i < a.steps.size(); ++i)
            equal &= same_bits(plain.value(a.steps[i]).f, g.value(b.steps[i]).f);
        CHECK(equal);
        CHECK(plain.backward(a.root) == backward && g.backward(b.root) == backward);
        equal &= same_bits(plain.grad(a.x), g.grad(b.x)) &&
                 same_bits(plain.grad(a.y), g.grad(b.y)) && same_bits(plain.grad(a.w), g.grad(b.w));
        for (size_t i = 0; i < a.steps.size(); ++i)
            equal &= same_bits(plain.grad(a.steps[i]), g.grad(b.steps[i]));
        CHECK(equal);
    };
    same(0.5, 1.25, 2.0, Status::Ok, Status::Ok);
    same(-0.75, 2.5, 1e300, Status::Ok, Status::Ok);
    same(std::nan(""), 1.0, 3.0, Status::Ok, Status::Ok);
    same(1.0, -1.0, 2.0, Status::ZeroToNegative, Status::Ok);  // s ** -1 of s = 0
    same(0.25, 0.5, 0.0, Status::Ok, Status::ZeroToNegative);  // backward's 0 ** -0.5
    same(0.25, 0.5, 4.0, Status::Ok, Status::Ok);              // and after the failures
}

// The engine's Program: a recording's forward pass (decoded, or recompute
// when a number read is an int) gives recompute's bits, its outputs keep
// their backward schedule while it lives, and it gives back the log's
// references when it goes.
void test_program() {
    Graph plain, g;
    Repeats a = build_repeats(plain), b = build_repeats(g);
    std::vector<NodeId> log;
    for (NodeId id : b.steps) {
        g.retain(id);  // as the recording's log holds them (build_repeats let its log go)
        log.push_back(id);
    }
    const size_t live = g.live_nodes();
    {
        agrad::Program program(g, log, {b.root, b.x});
        CHECK(program.operations() == b.steps.size() && program.nodes() == log.size());
        CHECK(g.keeps_schedule(b.root) && !g.keeps_schedule(b.x));  // x is no node it made
        for (Number x : {F(-0.75), I(3), F(0.25)}) {                // an int: through recompute
            plain.set_value(a.x, x);
            g.set_value(b.x, x);
            for (NodeId id : a.steps) built(plain.recompute(id));
            CHECK(program.forward() == Status::Ok);
            bool same = true;
            for (size_t i = 0; i < a.steps.size(); ++i) {
                const Number p = plain.value(a.steps[i]), q = g.value(b.steps[i]);
                same &= p.is_int == q.is_int && same_bits(p.as_double(), q.as_double());
            }
            CHECK(same);
            CHECK(plain.backward(a.root) == Status::Ok && g.backward(b.root) == Status::Ok);
            CHECK(same_bits(plain.grad(a.x), g.grad(b.x)) &&
                  same_bits(plain.grad(a.w), g.grad(b.w)));
        }
        g.set_value(b.x, F(1.0));
        g.set_value(b.y, F(-1.0));
        CHECK(program.forward() == Status::ZeroToNegative);  // s ** -1 of s = 0
    }
    CHECK(!g.keeps_schedule(b.root));
    CHECK(g.live_nodes() == live);  // the test's own references remain
}

// The table of operations (ops.hpp), entry by entry: each entry's value on a
// float is the libm function it names (with Python's errors), its value on a
// number gives a float (relu: keeps an int), its derivative agrees with a
// central difference, and the graph's eager operation, recompute and both
// backward passes (general and kept schedule) give the entry's numbers.
template <class Entry>
void check_entry(Op op, double (*reference)(double), double x) {
    double y = 0.0;
    CHECK(Entry::value(x, &y) == Status::Ok);
    CHECK(same_bits(y, reference(x)));
    double d = 0.0;
    CHECK(Entry::template derivative<agrad::Arith<true>>(x, y, &d) == Status::Ok);
    const double h = 1e-6;
    double up = 0.0, down = 0.0;
    Entry::value(x + h, &up);
    Entry::value(x - h, &down);
    const double slope = (up - down) / (2 * h);
    CHECK(std::fabs(d - slope) <= 1e-6 * (1.0 + std::fabs(slope)));
    // through the graph: eager, recompute, backward and a kept schedule
    Graph g;
    NodeId in = g.leaf(F(x));
    NodeId out;
    CHECK(g.unary(op, in, &out) == Status::Ok);
    CHECK(same_bits(g.value(out).as_double(), y));
    CHECK(g.recompute(out) == Status::Ok && same_bits(g.value(out).as_double(), y));
    for (int pass = 0; pass < 3; ++pass) {  // the first search, then the kept schedule
        if (pass == 1) g.keep_schedule(out);
        CHECK(g.backward(out) == Status::Ok);
        CHECK(same_bits(g.grad(in), agrad::mul(d, 1.0)));
    }
}

// The same for + and * (ops::Add, ops::Mul): the value on floats is the
// hardware's, chain() gives each operand's derivative (a central difference
// agrees), and the graph's eager operation, recompute and backward passes,
// with a node or an inline constant as the second operand, give them.
template <class Entry>
void check_binary_entry(Op op, double (*reference)(double, double), double x, double y) {
    using Rule = agrad::Arith<true>;
    const double r = Entry::template value<Rule>(x, y);
    CHECK(same_bits(r, reference(x, y)));
    const double by_x = Entry::template chain<Rule>(0.0, y, 1.0);
    const double by_y = Entry::template chain<Rule>(0.0, x, 1.0);
    const double h = 1e-6;
    const double slope_x = (reference(x + h, y) - reference(x - h, y)) / (2 * h);
    const double slope_y = (reference(x, y + h) - reference(x, y - h)) / (2 * h);
    CHECK(std::fabs(by_x - slope_x) <= 1e-6 * (1.0 + std::fabs(slope_x)));
    CHECK(std::fabs(by_y - slope_y) <= 1e-6 * (1.0 + std::fabs(slope_y)));
    // the gradient accumulates: acc + derivative * g
    CHECK(same_bits(Entry::template chain<Rule>(0.5, y, 3.0), 0.5 + by_x * 3.0));
    for (bool constant : {false, true}) {
        Graph g;
        const NodeId a = kept(g, g.leaf(F(x)));
        const NodeId b = constant ? Graph::kNoNode : kept(g, g.leaf(F(y)));
        const NodeId out = kept(g, constant ? with_number(g, op, a, F(y)) : binary(g, op, a, b));
        CHECK(same_bits(g.value(out).as_double(), r));
        CHECK(g.recompute(out) == Status::Ok && same_bits(g.value(out).as_double(), r));
        for (int pass = 0; pass < 3; ++pass) {  // the first search, then the kept schedule
            if (pass == 1) g.keep_schedule(out);
            CHECK(g.backward(out) == Status::Ok);
            CHECK(same_bits(g.grad(a), by_x));
            if (!constant) CHECK(same_bits(g.grad(b), by_y));
        }
    }
}

// x ** k (ops::Pow): Python's pow, its derivative k * x ** (k - 1) from
// power_below, and the graph's passes.
void check_pow_entry(double x, double k) {
    double y = 0.0, p = 0.0;
    CHECK(agrad::ops::Pow::value(x, k, &y) == Status::Ok && same_bits(y, std::pow(x, k)));
    CHECK(agrad::ops::Pow::power_below(x, k - 1.0, &p) == Status::Ok);
    const double d = agrad::ops::Pow::derivative<agrad::Arith<true>>(k, p);
    const double h = 1e-6;
    const double slope = (std::pow(x + h, k) - std::pow(x - h, k)) / (2 * h);
    CHECK(std::fabs(d - slope) <= 1e-6 * (1.0 + std::fabs(slope)));
    Graph g;
    const NodeId a = kept(g, g.leaf(F(x)));
    NodeId out = Graph::kNoNode;
    CHECK(g.power(a, F(k), &out) == Status::Ok);
    kept(g, out);
    CHECK(same_bits(g.value(out).as_double(), y));
    CHECK(g.recompute(out) == Status::Ok && same_bits(g.value(out).as_double(), y));
    for (int pass = 0; pass < 3; ++pass) {
        if (pass == 1) g.keep_schedule(out);
        CHECK(g.backward(out) == Status::Ok);
        CHECK(same_bits(g.grad(a), agrad::mul(d, 1.0)));
    }
}

double relu_reference(double x) { return x < 0.0 ? 0.0 : x; }
double sigmoid_reference(double x) { return 1.0 / (1.0 + std::exp(-x)); }

void test_table_of_operations() {
    for (double x : {0.3, 1.7, 2.5}) {
        check_entry<agrad::ops::Exp>(Op::Exp, [](double v) { return std::exp(v); }, x);
        check_entry<agrad::ops::Log>(Op::Log, [](double v) { return std::log(v); }, x);
        check_entry<agrad::ops::Tanh>(Op::Tanh, [](double v) { return std::tanh(v); }, x);
        check_entry<agrad::ops::Relu>(Op::Relu, relu_reference, x);
        check_entry<agrad::ops::Sigmoid>(Op::Sigmoid, sigmoid_reference, x);
    }
    for (double y : {-2.25, 0.5, 3.0}) {
        check_binary_entry<agrad::ops::Add>(
            Op::Add, [](double a, double b) { return a + b; }, 1.75, y);
        check_binary_entry<agrad::ops::Mul>(
            Op::Mul, [](double a, double b) { return a * b; }, 1.75, y);
        check_pow_entry(1.75, y);
    }
    check_entry<agrad::ops::Relu>(Op::Relu, relu_reference, -1.5);
    check_entry<agrad::ops::Sigmoid>(Op::Sigmoid, sigmoid_reference, 0.75);
    // Python's errors, and the int rules of a value on a number
    double y;
    Number r;
    CHECK(agrad::ops::Exp::value(1000.0, &y) == Status::MathRange);
    CHECK(agrad::ops::Log::value(0.0, &y) == Status::MathDomain);
    CHECK(agrad::ops::Log::derivative<agrad::Arith<true>>(0.0, 0.0, &y) ==
          Status::FloatDivisionByZero);
    CHECK(agrad::ops::Relu::of_number(I(-3), &r) == Status::Ok && is_int(r, 0));
    CHECK(agrad::ops::Relu::of_number(I(4), &r) == Status::Ok && is_int(r, 4));
    CHECK(agrad::ops::Tanh::of_number(I(0), &r) == Status::Ok && is_float(r, 0.0));
    CHECK(agrad::ops::Exp::of_number(I(0), &r) == Status::Ok && is_float(r, 1.0));
    // + , * and ** on Python's numbers: ints stay ints, within 64 bits
    CHECK(agrad::ops::Add::of_numbers(I(2), I(3), &r) == Status::Ok && is_int(r, 5));
    CHECK(agrad::ops::Add::of_numbers(I(2), F(0.5), &r) == Status::Ok && is_float(r, 2.5));
    CHECK(agrad::ops::Add::of_numbers(I(INT64_MAX), I(1), &r) == Status::IntOverflow);
    CHECK(agrad::ops::Mul::of_numbers(I(-4), I(3), &r) == Status::Ok && is_int(r, -12));
    CHECK(agrad::ops::Mul::of_numbers(I(INT64_MAX), I(2), &r) == Status::IntOverflow);
    CHECK(agrad::ops::Pow::of_numbers(I(2), I(10), &r) == Status::Ok && is_int(r, 1024));
    CHECK(agrad::ops::Pow::of_numbers(I(2), I(-2), &r) == Status::Ok && is_float(r, 0.25));
    CHECK(agrad::ops::Pow::value(0.0, -1.0, &y) == Status::ZeroToNegative);
    CHECK(std::strcmp(agrad::ops::Add::text, "+") == 0 &&
          std::strcmp(agrad::ops::Mul::text, "*") == 0);
    CHECK(agrad::with_binary(Op::Add, [](auto e) {
              return std::is_same_v<decltype(e), agrad::ops::Add> ? Status::Ok : Status::MathDomain;
          }) == Status::Ok);
    CHECK(agrad::with_binary(Op::Mul, [](auto e) {
              return std::is_same_v<decltype(e), agrad::ops::Mul> ? Status::Ok : Status::MathDomain;
          }) == Status::Ok);
    CHECK(agrad::with_binary(Op::Pow, [](auto) { return Status::Ok; }) == Status::MathDomain);
    // every entry has its op text, its kind, and is reached by with_unary
    int entries = 0;
#define AGRAD_TEST_ENTRY(name, method, text, ...)                                        \
    ++entries;                                                                           \
    CHECK(agrad::is_unary(Op::name));                                                    \
    CHECK(std::strcmp(agrad::unary_op_text(Op::name), text) == 0);                       \
    CHECK(agrad::unary_kind(Op::name) == agrad::k##name);                                \
    CHECK(agrad::with_unary(Op::name, [](auto e) {                                       \
              return std::is_same_v<decltype(e), agrad::ops::name> ? Status::Ok          \
                                                                   : Status::MathDomain; \
          }) == Status::Ok);
    AGRAD_UNARY_OPS(AGRAD_TEST_ENTRY)
#undef AGRAD_TEST_ENTRY
    CHECK(entries == 5);
    CHECK(!agrad::is_unary(Op::Add) && !agrad::is_unary(Op::Pow) && !agrad::is_unary(Op::Sum));
}

// agrad.grad's sweeps (higher.cpp): backward()'s gradients without touching
// any node's, and a gradient graph that can be differentiated again.
int guards_seen = 0;
bool last_guard = false;
void note_guard(agrad::Comparison c, NodeId, Operand right, bool outcome) {
    CHECK(c == agrad::Comparison::Greater && !right.is_node() && right.number.is_int);
    ++guards_seen;
    last_guard = outcome;
}

void test_second_derivatives() {
    Graph g;
    NodeId x = kept(g, g.leaf(F(3.0)));
    NodeId y = kept(g, g.leaf(F(2.0)));
    NodeId xx = kept(g, binary(g, Op::Mul, x, x));
    NodeId f = kept(g, binary(g, Op::Mul, xx, y));  // x*x*y
    NodeId r = 0;
    built(g.unary(Op::Relu, y, &r));
    r = kept(g, r);
    NodeId terms[] = {f, r, with_number(g, Op::Mul, x, F(2.5))};
    Operand ops[] = {Operand::of_node(terms[0]), Operand::of_node(terms[1]),
                     Operand::of_node(terms[2])};
    NodeId out = 0;
    built(g.sum(ops, 3, I(0), &out));
    out = kept(g, out);
    NodeId outside = kept(g, g.leaf(F(1.0)));
    const size_t live = g.live_nodes();

    // the float sweep: backward()'s bits, every gradient left as it was
    CHECK(g.backward(out) == Status::Ok);
    const double bx = g.grad(x), by = g.grad(y);
    g.set_grad(x, 100.0);
    NodeId inputs[] = {x, y, xx, outside};
    double got[4];
    CHECK(g.gradients(out, inputs, 4, got) == Status::Ok);
    CHECK(same_bits(got[0], bx) && same_bits(got[1], by));
    CHECK(same_bits(got[2], 2.0) && same_bits(got[3], 0.0));  // an interior node; unreached
    CHECK(same_bits(g.grad(x), 100.0) && same_bits(g.grad(xx), 2.0));

    // the gradient graph: the same values, as nodes; relu's slope asks a guard
    NodeId grads[4], refused = 0;
    CHECK(g.gradient_graph(out, inputs, 4, note_guard, grads, &refused) == Status::Ok);
    CHECK(refused == Graph::kNoNode);
    CHECK(guards_seen == 1 && last_guard);
    for (int i = 0; i < 4; ++i) CHECK(same_bits(g.value(grads[i]).as_double(), got[i]));
    // differentiated again: d/dx and d/dy of 2xy + 2.5
    double second[2];
    CHECK(g.gradients(grads[0], inputs, 2, second) == Status::Ok);
    CHECK(same_bits(second[0], 4.0) && same_bits(second[1], 6.0));
    CHECK(same_bits(g.grad(x), 100.0));
    for (NodeId id : grads) g.release(id);
    CHECK(g.live_nodes() == live);  // the gradient graph went with its last reference

    // a node made by hand on the way is refused with create_graph, passed over without
    NodeId hand = kept(g, g.custom(F(1.0), &x, 1, "hand"));
    NodeId via = kept(g, binary(g, Op::Mul, hand, y));
    CHECK(g.gradients(via, inputs, 2, got) == Status::Ok);
    CHECK(same_bits(got[0], 0.0) && same_bits(got[1], 1.0));
    CHECK(g.gradient_graph(via, inputs, 2, nullptr, grads, &refused) == Status::Ok);
    CHECK(refused == hand);
}

// x ** 2, x ** -1 and x ** -2 as a product and a quotient (number.hpp) give the libm
// pow's bits, near ties included, where the engine takes them, and pow is
// called where it does not.
void test_pow_by_product() {
    uint64_t state = 20261206;
    auto next = [&state] {  // a 64-bit LCG: no <random> needed for this much
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        return state >> 11;
    };
    int products = 0, calls = 0;
    bool same = true;
    for (int i = 0; i < 200000; ++i) {
        const double odd = static_cast<double>((next() % (1u << 26)) | (1u << 26) | 1u);
        const double scale = std::ldexp(1.0, static_cast<int>(next() % 200) - 100);
        double x = i % 3 == 0   ? odd * scale  // its square is a tie
                   : i % 3 == 1 ? (odd + static_cast<double>(next() % 2001) / 1e6 - 1e-3) * scale
                                : std::ldexp(1.0 + static_cast<double>(next()) / 9007199254740992.0,
                                             static_cast<int>(next() % 2000) - 1000);
        if (i % 2) x = -x;
        for (double k : {2.0, -1.0, -2.0}) {
            double fast = 0.0, reference = 0.0;
            const agrad::Status s = agrad::float_pow(x, k, &fast);
            const agrad::Status r = agrad::float_pow_general(x, k, &reference);
            same &= s == r && (s != Status::Ok || same_bits(fast, reference));
            double unused;
            const double base = std::fabs(x);
            const bool product = k == 2.0 ? agrad::detail::square_as_product(base, &unused)
                                 : k == -1.0
                                     ? agrad::detail::reciprocal_as_quotient(base, &unused)
                                     : agrad::detail::reciprocal_square_as_quotient(base, &unused);
            (product ? products : calls) += 1;
        }
    }
    CHECK(same);
#if defined(__GLIBC__)
    CHECK(products > 0 && calls > 0);  // both paths were taken
#endif
    double r = 0.0;
    CHECK(agrad::float_pow(3.0, 2.0, &r) == Status::Ok && same_bits(r, 9.0));
    CHECK(agrad::float_pow(-0.0, 1.0, &r) == Status::Ok && same_bits(r, -0.0));
    CHECK(agrad::float_pow(0.0, -1.0, &r) == Status::ZeroToNegative);
    CHECK(agrad::float_pow(1e200, 2.0, &r) == Status::PowRange);
}

// The chapter's loss over many points, recorded and replayed: its forward
// and backward run in groups (a thousand w * x, ...; w's and b's gradients
// summed in registers), and give eager's bits, before and after new data.
void test_grouped_program() {
    Graph plain, g;
    struct Loss {
        NodeId w, b, root;
        std::vector<NodeId> xs, ys, steps;
    };
    auto build = [](Graph& graph, std::vector<NodeId>* log) {
        Loss l;
        l.w = kept(graph, graph.leaf(F(0.3)));
        l.b = kept(graph, graph.leaf(F(-0.2)));
        for (int i = 0; i < 300; ++i) {
            l.xs.push_back(kept(graph, graph.leaf(F(0.01 * i - 1.0))));
            l.ys.push_back(kept(graph, graph.leaf(F(0.7 * std::sin(i)))));
        }
        graph.begin_recording(log);
        NodeId total = 0;
        for (size_t i = 0; i < l.xs.size(); ++i) {  // (y - (w * x + b)) ** 2, chained by +
            NodeId p = binary(graph, Op::Add, binary(graph, Op::Mul, l.w, l.xs[i]), l.b);
            NodeId r = binary(graph, Op::Add, l.ys[i], with_number(graph, Op::Mul, p, I(-1)));
            NodeId sq = 0;
            built(graph.power(r, I(2), &sq));
            total = i == 0 ? with_number(graph, Op::Add, sq, I(0))
                           : binary(graph, Op::Add, total, sq);
            if (i + 1 == l.xs.size()) graph.set_label(sq, "the last square");
        }
        l.root = kept(graph, with_number(graph, Op::Mul, total, F(1.0 / 300)));
        graph.end_recording();
        for (NodeId id : *log)
            if (graph.op(id) != Op::Leaf) l.steps.push_back(id);
        return l;
    };
    std::vector<NodeId> plain_log, log;
    Loss a = build(plain, &plain_log), b = build(g, &log);
    const size_t live = g.live_nodes();
    {
        agrad::Program program(g, log, {b.root});
        // The 300 squares, down the chain of +: laid out by group at the first
        // replay (Program::lay_out), they hold consecutive ids, and a moved
        // node keeps its label and its place in the graph.
        auto squares = [&g, &b] {
            std::vector<NodeId> found;
            for (NodeId total = g.child(b.root, 0); found.size() < 299; total = g.child(total, 0))
                found.push_back(g.child(total, 1));
            return found;
        };
        auto consecutive = [](const std::vector<NodeId>& ids) {
            bool up = true, down = true;
            for (size_t i = 1; i < ids.size(); ++i) {
                up &= ids[i] == ids[i - 1] + 1;
                down &= ids[i] + 1 == ids[i - 1];
            }
            return up || down;
        };
        CHECK(!consecutive(squares()));  // as recorded: a sample's nodes, then the next's
        for (int round = 0; round < 3; ++round) {
            const double shift = 0.5 * round;
            for (size_t i = 0; i < a.xs.size(); ++i) {
                plain.set_value(a.ys[i], F(0.7 * std::sin(i) + shift));
                g.set_value(b.ys[i], F(0.7 * std::sin(i) + shift));
            }
            plain.set_value(a.w, F(0.3 + shift));
            g.set_value(b.w, F(0.3 + shift));
            for (NodeId id : a.steps) built(plain.recompute(id));  // node by node, eager's rules
            CHECK(program.forward() == Status::Ok);
            CHECK(same_bits(plain.value(a.root).as_double(), g.value(b.root).as_double()));
            CHECK(plain.backward(a.root) == Status::Ok && g.backward(b.root) == Status::Ok);
            bool same = same_bits(plain.grad(a.w), g.grad(b.w)) &&
                        same_bits(plain.grad(a.b), g.grad(b.b));
            for (size_t i = 0; i < a.xs.size(); ++i)
                same &= same_bits(plain.grad(a.xs[i]), g.grad(b.xs[i])) &&
                        same_bits(plain.grad(a.ys[i]), g.grad(b.ys[i]));
            CHECK(same);
        }
        CHECK(consecutive(squares()));
        CHECK(g.label(squares()[0]) == "the last square");
        CHECK(g.op(squares()[0]) == Op::Pow && g.op(g.child(squares()[0], 0)) == Op::Add);
    }
    CHECK(g.live_nodes() == live);  // the program gave back the log's references
}

int main() {
    test_int_rules();
    test_float_rules();
    test_readme_graph();
    test_unary_and_power_gradients();
    test_refcount_freeing();
    test_fused_sum_matches_chain();
    test_fused_dot_matches_chain();
    test_fused_term_inside_later_term();
    test_inline_constants();
    test_custom_node();
    test_long_chain();
    test_kept_schedule();
    test_recording_takes_ascending_ids();
    test_leaves_after_a_large_release_are_neighbours();
    test_replay_matches_recompute();
    test_repeated_operations_shared();
    test_program();
    test_nan_rule();
    test_table_of_operations();
    test_second_derivatives();
    test_pow_by_product();
    test_grouped_program();
    std::printf("engine: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
