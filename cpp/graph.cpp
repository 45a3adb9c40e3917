// The cold half of the engine: n-ary nodes, freeing, and the backward pass.
#include "agrad/graph.hpp"

#include <algorithm>
#include <cstring>

namespace agrad {

namespace {
const std::string kEmpty;
}

void Graph::grow() {
    const size_t size = nodes_.size();
    try {
        nodes_.emplace_back();
        values_.emplace_back();
        grads_.push_back(0.0);
        ints_.push_back(0);
    } catch (...) {
        nodes_.resize(size);
        values_.resize(size);
        grads_.resize(size);
        ints_.resize(size);
        throw;
    }
}

uint32_t Graph::new_list() {
    if (!free_lists_.empty()) {
        uint32_t i = free_lists_.back();
        free_lists_.pop_back();
        lists_[i].entries.clear();  // keeps its capacity for the next n-ary node
        lists_[i].constants.clear();
        lists_[i].first_node = 0;
        lists_[i].input_first.clear();
        return i;
    }
    lists_.emplace_back();
    return static_cast<uint32_t>(lists_.size() - 1);
}

namespace {
int highest_bit(uint64_t bits) {  // bits != 0
#if defined(__GNUC__) || defined(__clang__)
    return 63 - __builtin_clzll(bits);
#else
    int bit = 63;
    while (!((bits >> bit) & 1u)) --bit;
    return bit;
#endif
}
}  // namespace

// Descending, so that pops give ascending ids.  A counting sort through a
// bitmap of the arena: linear, where std::sort of a 300,000-node free list
// took 7 ms, more than recording a small function.
void Graph::sort_free_list() {
    if (free_.size() < 2) return;
    free_bits_.assign((nodes_.size() + 63) / 64, 0);
    for (NodeId id : free_) free_bits_[id / 64] |= uint64_t{1} << (id % 64);
    size_t k = 0;
    for (size_t word = free_bits_.size(); word-- > 0;) {
        for (uint64_t bits = free_bits_[word]; bits != 0;) {
            const int bit = highest_bit(bits);
            free_[k++] = static_cast<NodeId>(word * 64 + bit);
            bits &= ~(uint64_t{1} << bit);
        }
    }
}

Status Graph::power(NodeId base, Number exponent, NodeId* out) {
    Number r;
    Status s = agrad::power(value(base), exponent, &r);
    if (s != Status::Ok) return s;
    NodeId id = allocate(Op::Pow);
    nodes_[id].child[0] = base;
    set_value(id, r);
    set_param(id, exponent);
    ++nodes_[base].refs;
    *out = id;
    return Status::Ok;
}

namespace {
// A unary op's value on a number, by its entry in the table (ops.hpp).
Status unary_value(Op op, Number x, Number* out) {
    return with_unary(op, [&](auto entry) { return decltype(entry)::of_number(x, out); });
}
}  // namespace

Status Graph::unary(Op op, NodeId a, NodeId* out) {
    Number r;
    Status s = unary_value(op, value(a), &r);
    if (s != Status::Ok) return s;
    NodeId id = allocate(op);
    nodes_[id].child[0] = a;
    set_value(id, r);
    ++nodes_[a].refs;
    *out = id;
    return Status::Ok;
}

Status Graph::sum(const Operand* terms, size_t n, Number start, NodeId* out) {
    size_t first = 0;  // the first Value term: v + total (ChildList)
    while (first < n && !terms[first].is_node()) ++first;
    Number total = start;
    for (size_t i = 0; i < n; ++i) {
        Number t = operand_value(terms[i]);
        Status s = i == first ? agrad::add(t, total, &total) : agrad::add(total, t, &total);
        if (s != Status::Ok) return s;
    }
    uint32_t list = new_list();
    lists_[list].first_node = static_cast<uint32_t>(first);
    lists_[list].entries.reserve(n);
    for (size_t i = 0; i < n; ++i) append(lists_[list], terms[i]);
    NodeId id = allocate(Op::Sum);
    nodes_[id].child[0] = list;
    set_value(id, total);
    set_param(id, start);
    *out = id;
    return Status::Ok;
}

Status Graph::dot(const Operand* weights, const Operand* inputs, size_t n, NodeId* out) {
    // the value of sum(w * x for w, x in zip(weights, inputs)): each product
    // (x * w when only x is a Value: x.__rmul__(w)), then a running total
    // from the int 0 (p + total at the first product with a Value: ChildList)
    size_t first = 0;
    while (first < n && !weights[first].is_node() && !inputs[first].is_node()) ++first;
    Number total = Number::of_int(0);
    for (size_t i = 0; i < n; ++i) {
        Number product;
        Number w = operand_value(weights[i]), x = operand_value(inputs[i]);
        Status s = !weights[i].is_node() && inputs[i].is_node() ? agrad::mul(x, w, &product)
                                                                : agrad::mul(w, x, &product);
        if (s == Status::Ok)
            s = i == first ? agrad::add(product, total, &total)
                           : agrad::add(total, product, &total);
        if (s != Status::Ok) return s;
    }
    uint32_t list = new_list();
    ChildList& l = lists_[list];
    l.first_node = static_cast<uint32_t>(2 * first);
    l.entries.reserve(2 * n);
    l.input_first.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        append(l, weights[i]);
        append(l, inputs[i]);
        l.input_first.push_back(!weights[i].is_node() && inputs[i].is_node());
    }
    NodeId id = allocate(Op::Dot);
    nodes_[id].child[0] = list;
    set_value(id, total);
    *out = id;
    return Status::Ok;
}

NodeId Graph::custom(Number value, const NodeId* children, size_t n, std::string op_name) {
    uint32_t list = new_list();
    lists_[list].entries.assign(children, children + n);
    for (size_t i = 0; i < n; ++i) ++nodes_[children[i]].refs;
    NodeId id = allocate(Op::Custom);
    nodes_[id].child[0] = list;
    set_value(id, value);
    if (!op_name.empty()) {
        op_names_[id] = std::move(op_name);
        nodes_[id].flags |= kHasOpName;
    }
    return id;
}

void Graph::materialize_constants(NodeId id) {
    if (has_list(nodes_[id].op)) {
        uint32_t list = nodes_[id].child[0];
        if (lists_[list].constants.empty()) return;
        ++shape_;  // the node gains children: kept schedules are stale
        for (NodeId& entry : lists_[list].entries) {
            if (!is_constant(entry)) continue;
            const Constant k = lists_[list].constants[entry & ~kConstantEntry];
            NodeId c = leaf(k.value);
            grads_[c] = k.grad;
            retain(c);  // the parent's reference (a recording log may hold one too)
            entry = c;
        }
        lists_[list].constants.clear();
        return;
    }
    if (!(nodes_[id].flags & kInlineConstant)) return;
    ++shape_;
    Number constant = param(id);
    double grad = nodes_[id].constant_grad;
    NodeId c = leaf(constant);  // may move nodes_: no reference into it is held
    grads_[c] = grad;
    retain(c);
    Node& n = nodes_[id];
    n.child[1] = c;
    n.flags &= static_cast<uint8_t>(~(kInlineConstant | kParamIsInt));
}

// Each case computes what the function that made the node computed, in the
// same order: binary() for Add and Mul, power(), unary(), sum(), dot().  A
// constant materialized since (for _prev) is a leaf child with the same value.
Status Graph::recompute(NodeId id) {
    Number r;
    Status s = Status::Ok;
    switch (nodes_[id].op) {
        case Op::Leaf:
        case Op::Custom:
            return Status::Ok;
        case Op::Add:
        case Op::Mul: {
            const Node& n = nodes_[id];
            Number x = value(n.child[0]);
            Number y = (n.flags & kInlineConstant) ? param(id) : value(n.child[1]);
            s = n.op == Op::Add ? agrad::add(x, y, &r) : agrad::mul(x, y, &r);
            break;
        }
        case Op::Pow:
            s = agrad::power(value(nodes_[id].child[0]), param(id), &r);
            break;
        case Op::Sum: {
            const ChildList& list = lists_[nodes_[id].child[0]];
            r = param(id);
            for (size_t i = 0; i < list.entries.size(); ++i) {
                Number t = entry_value(list, list.entries[i]);
                s = i == list.first_node ? agrad::add(t, r, &r) : agrad::add(r, t, &r);
                if (s != Status::Ok) break;
            }
            break;
        }
        case Op::Dot: {
            const ChildList& list = lists_[nodes_[id].child[0]];
            r = Number::of_int(0);
            for (size_t i = 0; i + 1 < list.entries.size(); i += 2) {
                Number product;
                Number w = entry_value(list, list.entries[i]);
                Number x = entry_value(list, list.entries[i + 1]);
                s = list.input_first[i / 2] ? agrad::mul(x, w, &product)
                                            : agrad::mul(w, x, &product);
                if (s == Status::Ok)
                    s = i == list.first_node ? agrad::add(product, r, &r)
                                             : agrad::add(r, product, &r);
                if (s != Status::Ok) break;
            }
            break;
        }
        default:  // exp, log, ...: the table's entries
            s = unary_value(nodes_[id].op, value(nodes_[id].child[0]), &r);
            break;
    }
    if (s != Status::Ok) return s;
    set_value(id, r);
    return Status::Ok;
}

const std::string& Graph::label(NodeId id) const {
    if (!(nodes_[id].flags & kHasLabel)) return kEmpty;
    return labels_.find(id)->second;
}

void Graph::set_label(NodeId id, std::string label) {
    if (label.empty()) {
        if (nodes_[id].flags & kHasLabel) labels_.erase(id);
        nodes_[id].flags &= static_cast<uint8_t>(~kHasLabel);
        return;
    }
    labels_[id] = std::move(label);
    nodes_[id].flags |= kHasLabel;
}

const std::string& Graph::op_name(NodeId id) const {
    if (!(nodes_[id].flags & kHasOpName)) return kEmpty;
    return op_names_.find(id)->second;
}

// Frees a node and, through a worklist rather than recursion, every child
// whose last reference it held: a chain of ten million nodes goes in a loop.
void Graph::free_unreferenced(NodeId id) {
    dying_.push_back(id);
    while (!dying_.empty()) {
        NodeId d = dying_.back();
        dying_.pop_back();
        Node& n = nodes_[d];
        if (n.flags & kHasLabel) labels_.erase(d);
        if (n.flags & kHasOpName) op_names_.erase(d);
        if (n.flags & kKeepsSchedule) schedules_.erase(d);
        size_t count = child_count(d);
        for (size_t i = 0; i < count; ++i) {
            NodeId c = child(d, i);
            if (!is_constant(c) && --nodes_[c].refs == 0) dying_.push_back(c);
        }
        if (has_list(n.op)) free_lists_.push_back(n.child[0]);
        n.op = Op::Leaf;
        n.flags = 0;
        free_.push_back(d);
    }
}

// Post-order of a depth-first search from root over children in order, as
// agrad.pure.topological_order lists it; written to order_.  Each node's
// gradient is zeroed as the search first reaches it, saving a second pass
// (unless `zero` is false: agrad.grad's sweeps leave gradients alone).
//
// A fused node stands for a chain: sum's `0 + t0 + t1 + ...`, dot's
// `0 + w0*x0 + w1*x1 + ...`.  In the chain's post-order the addition that
// takes term i comes right after term i's subtree, so a step for term i goes
// there too: backward then hands each term its gradient at the chain's moment.
void Graph::topological_order(NodeId root, bool zero) {
    if (++epoch_ == 0) {  // the stamp wrapped: no stale stamp may look current
        for (Node& n : nodes_) n.stamp = 0;
        epoch_ = 1;
    }
    order_.clear();
    stack_.clear();
    sinks_.clear();
    auto reach = [this, zero](NodeId id) {
        Node& n = nodes_[id];
        n.stamp = epoch_;
        if (zero) {
            grads_[id] = 0.0;
            n.constant_grad = 0.0;
        }
        const uint32_t count = static_cast<uint32_t>(child_count(id));
        if (count == 0 || has_list(n.op)) sinks_.push_back(id);  // (backward_scheduled)
        stack_.push_back({id, 0u, count, false});
    };
    // Does child j end a term?  Every child of a sum; the input of each dot pair.
    auto ends_term = [this](NodeId id, uint32_t j) {
        Op op = nodes_[id].op;
        return op == Op::Sum || (op == Op::Dot && (j & 1u));
    };
    reach(root);
    while (!stack_.empty()) {
        Visit& top = stack_.back();
        const NodeId node = top.node;
        if (top.term_pending) {
            order_.push_back({node, top.next - 1});
            top.term_pending = false;
        }
        bool descended = false;
        while (top.next < top.count) {
            const uint32_t j = top.next++;
            NodeId c = child(node, j);
            if (!is_constant(c) && nodes_[c].stamp != epoch_) {
                top.term_pending = ends_term(node, j);
                reach(c);  // may reallocate stack_: `top` is not used after this
                descended = true;
                break;
            }
            if (ends_term(node, j)) order_.push_back({node, j});
        }
        if (!descended) {
            order_.push_back({node, Step::kWholeNode});
            stack_.pop_back();
        }
    }
}

// The chain rule at one node: add its local gradients, times its own
// gradient, to its children's.  Each formula is the one agrad.pure writes,
// operation for operation.  A node's own value is read through value(), never
// as the union's double: Python may have written an int into any node's data.
template <bool kRule>
Status Graph::propagate(NodeId id) {
    using F = Arith<kRule>;
    Node& n = nodes_[id];
    const double g = grads_[id];
    switch (n.op) {
        case Op::Leaf:
        case Op::Custom:
            return Status::Ok;
        case Op::Add:
            grads_[n.child[0]] = F::add(grads_[n.child[0]], g);
            if (n.flags & kInlineConstant)
                set_constant_grad<kRule>(n.constant_grad,
                                         F::add(0.0, g));  // zeroed, then its one contribution
            else
                grads_[n.child[1]] = F::add(grads_[n.child[1]], g);
            return Status::Ok;
        case Op::Mul: {
            NodeId a = n.child[0];
            if (n.flags & kInlineConstant) {
                grads_[a] = F::add_mul(grads_[a], param(id).as_double(), g);
                set_constant_grad<kRule>(n.constant_grad, F::add_mul(0.0, value(a).as_double(), g));
            } else {
                NodeId b = n.child[1];
                grads_[a] = F::add_mul(grads_[a], value(b).as_double(), g);
                grads_[b] = F::add_mul(grads_[b], value(a).as_double(), g);
            }
            return Status::Ok;
        }
        case Op::Pow: {
            Number k = param(id);
            NodeId a = n.child[0];
            double p;
            Status s = float_pow(value(a).as_double(), exponent_minus_one(k), &p);
            if (s != Status::Ok) return s;
            grads_[a] = F::add(grads_[a], F::mul(F::mul(k.as_double(), p), g));
            return Status::Ok;
        }
        case Op::Sum:
        case Op::Dot:
            return Status::Ok;  // their terms have steps of their own
        default: {              // the table's entries (ops.hpp): d, then grad += d * g
            const NodeId a = n.child[0];
            double d = 0.0;
            Status s = with_unary(n.op, [&](auto entry) {
                return decltype(entry)::template derivative<F>(value(a).as_double(),
                                                               value(id).as_double(), &d);
            });
            if (s != Status::Ok) return s;
            grads_[a] = F::add_mul(grads_[a], d, g);
            return Status::Ok;
        }
    }
}

// One term of a fused node: what the chain's addition of that term (and, for
// dot, the product before it) passes down.  Each link of the chain has the
// fused node's gradient: 0.0 + g, as the chain's own nodes would hold it.
template <bool kRule>
void Graph::propagate_term(NodeId id, uint32_t term) {
    using F = Arith<kRule>;
    Node& n = nodes_[id];
    const double g = F::add(0.0, grads_[id]);
    ChildList& list = lists_[n.child[0]];
    if (n.op == Op::Sum) {
        add_to_grad<kRule>(list, list.entries[term], g);
        return;
    }
    NodeId w = list.entries[term - 1], x = list.entries[term];
    double wv = entry_value(list, w).as_double();
    double xv = entry_value(list, x).as_double();
    add_to_grad<kRule>(list, w, F::mul(xv, g));
    add_to_grad<kRule>(list, x, F::mul(wv, g));
}

void Graph::zero_gradients() {
    for (const Step& step : order_) {
        NodeId id = step.node;
        grads_[id] = 0.0;
        nodes_[id].constant_grad = 0.0;
        if (has_list(nodes_[id].op))
            for (Constant& k : lists_[nodes_[id].child[0]].constants) k.grad = 0.0;
    }
}

void Graph::keep_schedule(NodeId root) {
    schedules_[root];  // made at the first backward()
    nodes_[root].flags |= kKeepsSchedule;
}

void Graph::forget_schedule(NodeId root) {
    if (!(nodes_[root].flags & kKeepsSchedule)) return;
    schedules_.erase(root);
    nodes_[root].flags &= static_cast<uint8_t>(~kKeepsSchedule);
}

// The kinds of a decoded step beyond a node's own operation (NodeKind): one
// term of a sum or dot, with its operands' kinds, and the merged steps.
namespace {
enum Kind : uint8_t {
    kSumTermN = kNodeKinds,
    kSumTermK,
    kDotTermNN,
    kDotTermNK,
    kDotTermKN,
    kDotTermKK,
    kSumRun,   // kSumTermN steps of one node, merged
    kDotRun,   // kDotTermNN steps of one node, merged
    kChain,    // links of a chain of s = s' + w * x, merged (fuse_chains)
    kPowKeep,  // kPow, keeping its pow(x, k - 1) in powers[b] (share_powers)
    kPowKept,  // kPow, reading its pow(x, k - 1) from powers[b]
};
}  // namespace

NodeKind Graph::node_kind(NodeId id) const {
    const Node& n = nodes_[id];
    const bool constant = (n.flags & kInlineConstant) != 0;
    switch (n.op) {
        case Op::Add:
            return constant ? kAddNK : kAddNN;
        case Op::Mul:
            return constant ? kMulNK : kMulNN;
        case Op::Pow:
            return kPow;
        default:
            return unary_kind(n.op);  // the table's entries, kNodeKinds for any other
    }
}

Graph::Decoded Graph::decode(const Step& step) const {
    const Node& n = nodes_[step.node];
    Decoded d{0, step.node, 0, 0};
    if (step.term != Step::kWholeNode) {
        const ChildList& list = lists_[n.child[0]];
        auto operand = [](NodeId entry) { return entry & ~kConstantEntry; };
        if (n.op == Op::Sum) {
            NodeId t = list.entries[step.term];
            d.kind = is_constant(t) ? kSumTermK : kSumTermN;
            d.a = operand(t);
            return d;
        }
        NodeId w = list.entries[step.term - 1], x = list.entries[step.term];
        d.kind = is_constant(w) ? (is_constant(x) ? kDotTermKK : kDotTermKN)
                                : (is_constant(x) ? kDotTermNK : kDotTermNN);
        d.a = operand(w);
        d.b = operand(x);
        return d;
    }
    d.a = n.child[0];
    d.b = n.child[1];
    d.kind = node_kind(step.node);  // make_schedule keeps no other whole-node step
    return d;
}

// The search's order, as backward() would take it, kept, decoded.
void Graph::make_schedule(NodeId root, Schedule& schedule) {
    topological_order(root);
    schedule.shape = 0;  // until it is complete: an allocation may fail below
    std::vector<NodeId> reached;
    schedule.with_constant.clear();
    schedule.steps.clear();
    for (const Step& step : order_) {
        if (step.term != Step::kWholeNode) {
            schedule.steps.push_back(decode(step));
            continue;
        }
        reached.push_back(step.node);
        if (nodes_[step.node].flags & kInlineConstant) schedule.with_constant.push_back(step.node);
        switch (nodes_[step.node].op) {
            case Op::Leaf:
            case Op::Custom:
            case Op::Sum:
            case Op::Dot:
                break;  // propagate() does nothing for these
            default:
                schedule.steps.push_back(decode(step));
        }
    }
    // A recording takes its nodes in ascending ids: the reached ones are
    // mostly spans of consecutive ids, each zeroed as one block.
    std::sort(reached.begin(), reached.end());
    schedule.spans.clear();
    for (size_t i = 0; i < reached.size(); ++i) {
        if (i == 0 || reached[i] != reached[i - 1] + 1)
            schedule.spans.insert(schedule.spans.end(), {reached[i], reached[i]});
        ++schedule.spans.back();
    }
    schedule.sinks = sinks_;
    merge_runs(schedule);
    fuse_chains(schedule);
    share_powers(schedule);
    schedule.floats_since = Schedule::kNever;
    schedule.shape = shape_;
}

void Graph::merge_runs(Schedule& schedule) const {
    std::vector<Decoded>& steps = schedule.steps;
    schedule.operands.clear();
    size_t out = 0;
    for (size_t i = 0; i < steps.size();) {
        const Decoded first = steps[i];
        const bool mergeable = first.kind == kSumTermN || first.kind == kDotTermNN;
        size_t j = i + 1;
        while (mergeable && j < steps.size() && steps[j].kind == first.kind &&
               steps[j].node == first.node)
            ++j;
        if (j - i == 1) {
            steps[out++] = first;
            i = j;
            continue;
        }
        Decoded run{first.kind == kSumTermN ? kSumRun : kDotRun, first.node,
                    static_cast<NodeId>(schedule.operands.size()), static_cast<NodeId>(j - i)};
        for (size_t k = i; k < j; ++k) {
            schedule.operands.push_back(steps[k].a);
            if (first.kind == kDotTermNN) schedule.operands.push_back(steps[k].b);
        }
        steps[out++] = run;
        i = j;
    }
    steps.resize(out);
}

// micrograd's neuron, sum((w * x for ...), b), is a chain of links s = s' + m,
// m = w * x; backward takes each link's two steps (the addition's, then the
// product's) and then the link below.  As one kChain step the gradient passed
// down the chain stays in a register rather than being stored and loaded
// back: the same additions in the same order.  A link whose product reads s'
// or m is left alone (its steps would change that gradient again).
void Graph::fuse_chains(Schedule& schedule) const {
    std::vector<Decoded>& steps = schedule.steps;
    // Do steps[i] (an addition) and steps[i - 1] (its product) make a link?
    auto link = [&steps](size_t i, NodeId* below, NodeId* product) {
        if (i < 1) return false;
        const Decoded& add = steps[i];
        const Decoded& mul = steps[i - 1];
        if (add.kind != kAddNN || mul.kind != kMulNN || add.a == add.b) return false;
        if (mul.node != add.a && mul.node != add.b) return false;
        *product = mul.node;
        *below = mul.node == add.a ? add.b : add.a;
        return mul.a != *below && mul.b != *below && mul.a != *product && mul.b != *product;
    };
    std::vector<Decoded> fused;
    fused.reserve(steps.size());
    // from the end, the order backward() takes them; reversed again after
    for (size_t i = steps.size(); i-- > 0;) {
        NodeId below, product;
        if (!link(i, &below, &product)) {
            fused.push_back(steps[i]);
            continue;
        }
        Decoded chain{kChain, steps[i].node, static_cast<NodeId>(schedule.operands.size()), 0};
        for (;;) {
            const Decoded& mul = steps[i - 1];
            schedule.operands.insert(schedule.operands.end(), {below, product, mul.a, mul.b});
            ++chain.b;
            const NodeId top = below;
            if (i < 2 || !link(i - 2, &below, &product) || steps[i - 2].node != top) {
                i -= 1;  // the loop's i-- takes the product's step too
                break;
            }
            i -= 2;
        }
        fused.push_back(chain);
    }
    std::reverse(fused.begin(), fused.end());
    steps.swap(fused);
}

// A softmax written as e / s divides by s ** -1 four times: four nodes that
// each pass their own gradient down to s (merged, the additions into s's
// gradient would come in another order), but whose local derivatives
// k * pow(s, k - 1) are one.  pow is most of such a step, so the first of
// them in backward's order computes it and keeps it, the others read it.
// Only x and k decide it (not the node's own value), and x is the same
// node: the same bits at every step of a pass.  An error stops the pass at
// the first of them, where it stopped before.  Steps of the same x and the
// same k, an int's or a float's (k - 1 differs between them), bit for bit.
void Graph::share_powers(Schedule& schedule) const {
    struct Key {
        uint64_t k;
        NodeId x;
        bool is_int;
        bool operator==(const Key& o) const { return k == o.k && x == o.x && is_int == o.is_int; }
    };
    struct Hash {
        size_t operator()(const Key& key) const {
            const uint64_t h = (key.k * 0x9E3779B97F4A7C15ull) ^ (uint64_t{key.x} << 1) ^
                               key.is_int;
            return static_cast<size_t>(h ^ (h >> 29));
        }
    };
    std::unordered_map<Key, size_t, Hash> first;  // the step that keeps it
    schedule.powers.clear();
    std::vector<Decoded>& steps = schedule.steps;
    for (size_t i = steps.size(); i-- > 0;) {  // backward's order
        Decoded& step = steps[i];
        if (step.kind != kPow) continue;
        const Node& n = nodes_[step.node];
        Key key{0, step.a, (n.flags & kParamIsInt) != 0};
        std::memcpy(&key.k, &n.param, sizeof key.k);
        auto [at, fresh] = first.try_emplace(key, i);
        if (fresh) continue;
        Decoded& keeper = steps[at->second];
        if (keeper.kind == kPow) {
            keeper.kind = kPowKeep;
            keeper.b = static_cast<NodeId>(schedule.powers.size());
            schedule.powers.push_back(0.0);
        }
        step.kind = kPowKept;
        step.b = keeper.b;
    }
}

// propagate() and propagate_term() on a decoded step: the same formulas,
// operation for operation, on operands found when the schedule was made.
// (inlined into run_schedule's loop: as the one caller of the old
// single-pass code it was, and out of line a pass costs a call a step)
template <bool kFloats, bool kRule>
AGRAD_ALWAYS_INLINE Status Graph::run_decoded(const Decoded& step, const NodeId* operands,
                                              double* powers) {
    using F = Arith<kRule>;
    Node& n = nodes_[step.node];
    double* grads = grads_.data();
    const Slot* values = values_.data();
    auto number = [this, values](NodeId m) {
        if (kFloats) return values[m].f;
        return value(m).as_double();
    };
    auto constant = [this, &n](NodeId k) -> Constant& { return lists_[n.child[0]].constants[k]; };
    const double g = grads[step.node];
    switch (step.kind) {
        case kAddNN:
            grads[step.a] = F::add(grads[step.a], g);
            grads[step.b] = F::add(grads[step.b], g);
            return Status::Ok;
        case kAddNK:
            grads[step.a] = F::add(grads[step.a], g);
            set_constant_grad<kRule>(n.constant_grad, F::add(0.0, g));
            return Status::Ok;
        case kMulNN:
            grads[step.a] = F::add_mul(grads[step.a], number(step.b), g);
            grads[step.b] = F::add_mul(grads[step.b], number(step.a), g);
            return Status::Ok;
        case kMulNK:
            grads[step.a] = F::add_mul(grads[step.a], param(step.node).as_double(), g);
            set_constant_grad<kRule>(n.constant_grad, F::add_mul(0.0, number(step.a), g));
            return Status::Ok;
        case kPow:
        case kPowKeep:
        case kPowKept: {
            Number k = param(step.node);
            double p;
            if (step.kind == kPowKept) {
                p = powers[step.b];
            } else {
                Status s = float_pow(number(step.a), exponent_minus_one(k), &p);
                if (s != Status::Ok) return s;
                if (step.kind == kPowKeep) powers[step.b] = p;
            }
            grads[step.a] = F::add(grads[step.a], F::mul(F::mul(k.as_double(), p), g));
            return Status::Ok;
        }
#define AGRAD_BACKWARD_UNARY(name, ...)                                             \
    case k##name: { /* the table's entry (ops.hpp): d, then grad += d * g */        \
        double d = 0.0;                                                             \
        Status s = ops::name::derivative<F>(number(step.a), number(step.node), &d); \
        if (s != Status::Ok) return s;                                              \
        grads[step.a] = F::add_mul(grads[step.a], d, g);                            \
        return Status::Ok;                                                          \
    }
            AGRAD_UNARY_OPS(AGRAD_BACKWARD_UNARY)
#undef AGRAD_BACKWARD_UNARY
        case kSumTermN:
            grads[step.a] = F::add(grads[step.a], F::add(0.0, g));
            return Status::Ok;
        case kSumTermK:
            set_constant_grad<kRule>(constant(step.a).grad, F::add(0.0, F::add(0.0, g)));
            return Status::Ok;
        case kDotTermNN: {
            const double link = F::add(0.0, g);
            const double wv = number(step.a), xv = number(step.b);
            grads[step.a] = F::add_mul(grads[step.a], xv, link);
            grads[step.b] = F::add_mul(grads[step.b], wv, link);
            return Status::Ok;
        }
        case kDotTermNK: {
            const double link = F::add(0.0, g);
            Constant& x = constant(step.b);
            const double wv = number(step.a);
            grads[step.a] = F::add_mul(grads[step.a], x.value.as_double(), link);
            set_constant_grad<kRule>(x.grad, F::add_mul(0.0, wv, link));
            return Status::Ok;
        }
        case kDotTermKN: {
            const double link = F::add(0.0, g);
            Constant& w = constant(step.a);
            const double xv = number(step.b);
            set_constant_grad<kRule>(w.grad, F::add_mul(0.0, xv, link));
            grads[step.b] = F::add_mul(grads[step.b], w.value.as_double(), link);
            return Status::Ok;
        }
        case kSumRun: {  // backward takes a run's terms last first
            const double link = F::add(0.0, g);
            const NodeId* ids = operands + step.a;
            for (size_t t = step.b; t-- > 0;) grads[ids[t]] = F::add(grads[ids[t]], link);
            return Status::Ok;
        }
        case kChain: {
            double down = g;  // the gradient the link's addition passes on
            const NodeId* link = operands + step.a;
            for (NodeId l = 0; l < step.b; ++l, link += 4) {
                const NodeId below = link[0], product = link[1], w = link[2], x = link[3];
                const double to_below = F::add(grads[below], down);
                grads[below] = to_below;
                const double to_product = F::add(grads[product], down);
                grads[product] = to_product;
                const double wv = number(w), xv = number(x);
                grads[w] = F::add_mul(grads[w], xv, to_product);
                grads[x] = F::add_mul(grads[x], wv, to_product);
                down = to_below;
            }
            return Status::Ok;
        }
        case kDotRun: {
            const double link = F::add(0.0, g);
            const NodeId* pairs = operands + step.a;
            for (size_t t = step.b; t-- > 0;) {
                const NodeId w = pairs[2 * t], x = pairs[2 * t + 1];
                const double wv = number(w), xv = number(x);
                grads[w] = F::add_mul(grads[w], xv, link);
                grads[x] = F::add_mul(grads[x], wv, link);
            }
            return Status::Ok;
        }
        default: {  // kDotTermKK
            const double link = F::add(0.0, g);
            Constant& w = constant(step.a);
            Constant& x = constant(step.b);
            const double wv = w.value.as_double(), xv = x.value.as_double();
            set_constant_grad<kRule>(w.grad, F::add_mul(0.0, xv, link));
            set_constant_grad<kRule>(x.grad, F::add_mul(0.0, wv, link));
            return Status::Ok;
        }
    }
}

// Whether every node the schedule reaches holds a float: checked once, then
// taken on trust for as long as no int is written anywhere.
bool Graph::reads_floats_only(Schedule& schedule) const {
    if (schedule.floats_since == int_writes_) return true;
    const std::vector<NodeId>& spans = schedule.spans;
    for (size_t i = 0; i < spans.size(); i += 2)
        for (NodeId id = spans[i]; id < spans[i + 1]; ++id)
            if (ints_[id]) return false;
    schedule.floats_since = int_writes_;
    return true;
}

// The gradients a kept schedule's pass starts from: every reached node's and
// inline constant's 0 (no other node's constant_grad means anything).
void Graph::zero_scheduled(const Schedule& schedule) {
    const std::vector<NodeId>& spans = schedule.spans;
    for (size_t i = 0; i < spans.size(); i += 2)
        std::fill(grads_.begin() + spans[i], grads_.begin() + spans[i + 1], 0.0);
    for (NodeId id : schedule.with_constant) nodes_[id].constant_grad = 0.0;
}

template <bool kRule>
Status Graph::run_schedule(NodeId root, Schedule& schedule, bool floats) {
    grads_[root] = 1.0;
    const std::vector<Decoded>& steps = schedule.steps;
    const NodeId* operands = schedule.operands.data();
    double* powers = schedule.powers.data();
    for (size_t i = steps.size(); i-- > 0;) {
        Status s = floats ? run_decoded<true, kRule>(steps[i], operands, powers)
                          : run_decoded<false, kRule>(steps[i], operands, powers);
        if (s != Status::Ok) {
            const std::vector<NodeId>& spans = schedule.spans;
            for (size_t j = 0; j < spans.size(); j += 2)
                for (NodeId id = spans[j]; id < spans[j + 1]; ++id) {
                    grads_[id] = 0.0;
                    nodes_[id].constant_grad = 0.0;
                    if (has_list(nodes_[id].op))
                        for (Constant& k : lists_[nodes_[id].child[0]].constants) k.grad = 0.0;
                }
            return s;
        }
    }
    return Status::Ok;
}

// Why a backward pass runs on the hardware first and with the NaN rule only
// if it must: the rule (number.hpp) costs a test at every + and * (+22% on
// a replayed micrograd backward), and it only changes a result whose
// operands are both NaN, which is then a NaN itself.  So it is enough to
// know whether the pass made a NaN anywhere:
// - every + and * result of a step reaches a gradient through + and * (and
//   `1.0 - x`), which keep a NaN a NaN (0 * NaN too): a node's, which is
//   only added to after it is zeroed, or a constant's, which is written once
//   and noted then (set_constant_grad);
// - a node's step runs after every addition into its gradient (reverse
//   topological order) and adds that gradient, times a factor, into every
//   child node's (a fused node through its terms' steps), so a NaN in a
//   node's gradient ends up in a NaN in the gradient of a node without
//   children or a custom node, or in a constant's (a fused node whose terms
//   are all constants).  sinks_ holds those nodes, and every fused node.
// So if those gradients hold no NaN at the end, no operation met a NaN and
// the hardware's bits are the rule's; otherwise the pass runs again, from
// the zeroed gradients, with the rule.  A pass is a function of the values
// alone, and an error (pow, a division: values only) stops both passes at
// the same step, so the second pass is exactly the rule's pass.
Status Graph::backward_scheduled(NodeId root, Schedule& schedule) {
    if (schedule.shape != shape_)
        make_schedule(root, schedule);  // zeroes the gradients as it goes
    else
        zero_scheduled(schedule);
    const bool floats = reads_floats_only(schedule);
    nan_seen_ = false;
    Status s = run_schedule<false>(root, schedule, floats);
    if (s != Status::Ok) return s;
    bool nan = nan_seen_;
    const double* grads = grads_.data();
    for (NodeId id : schedule.sinks) nan |= grads[id] != grads[id];
    if (!nan) return Status::Ok;
    zero_scheduled(schedule);
    return run_schedule<true>(root, schedule, floats);
}

template <bool kRule>
Status Graph::propagate_all(NodeId root) {
    grads_[root] = 1.0;
    for (size_t i = order_.size(); i-- > 0;) {
        const Step& step = order_[i];
        if (step.term != Step::kWholeNode) {
            propagate_term<kRule>(step.node, step.term);
            continue;
        }
        Status s = propagate<kRule>(step.node);
        if (s != Status::Ok) {
            zero_gradients();
            return s;
        }
    }
    return Status::Ok;
}

// agrad.grad's float sweep (higher.cpp) takes the rule's steps one by one.
template Status Graph::propagate<true>(NodeId id);
template void Graph::propagate_term<true>(NodeId id, uint32_t term);

// (on the hardware first, as backward_scheduled explains)
Status Graph::backward(NodeId root) {
    if (nodes_[root].flags & kKeepsSchedule) return backward_scheduled(root, schedules_[root]);
    topological_order(root);  // zeroes the reached gradients
    nan_seen_ = false;
    Status s = propagate_all<false>(root);
    if (s != Status::Ok) return s;
    bool nan = nan_seen_;
    for (NodeId id : sinks_) nan |= grads_[id] != grads_[id];
    if (!nan) return Status::Ok;
    zero_gradients();
    return propagate_all<true>(root);
}

}  // namespace agrad
