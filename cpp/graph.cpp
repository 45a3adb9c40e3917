// The arena's cold half: n-ary nodes, freeing, the depth-first search and the
// eager backward pass.
#include "agrad/graph.hpp"

#include "agrad/program.hpp"  // Schedule: the kept schedules stored here

#include <algorithm>
#include <cstring>
#include <tuple>

namespace agrad {

namespace {
const std::string kEmpty;
}

Graph::Graph() = default;
Graph::~Graph() = default;

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
    frees_since_sort_ = 0;
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

// (a table over the moved ids' range: a recording's ids are mostly one span)
Graph::Moves::Moves(std::vector<NodeId> from, std::vector<NodeId> to)
    : from_(std::move(from)), to_(std::move(to)) {
    if (from_.empty()) return;
    const auto [least, most] = std::minmax_element(from_.begin(), from_.end());
    first_ = *least;
    new_ids_.assign(*most - first_ + 1, kNoNode);
    for (size_t i = 0; i < from_.size(); ++i) new_ids_[from_[i] - first_] = to_[i];
}

NodeId Graph::Moves::operator()(NodeId id) const {
    if (id < first_ || id - first_ >= new_ids_.size()) return id;
    const NodeId moved = new_ids_[id - first_];
    return moved == kNoNode ? id : moved;
}

void Graph::relocate(const Moves& moves, const std::vector<NodeId>& parents) {
    const std::vector<NodeId>& from = moves.from();
    const std::vector<NodeId>& to = moves.to();
    const size_t n = from.size();
    for (NodeId p : parents) {
        Node& node = nodes_[p];
        if (has_list(node.op)) {
            for (NodeId& e : lists_[node.child[0]].entries)
                if (!is_constant(e)) e = moves(e);
        } else {
            const size_t count = child_count(p);
            for (size_t i = 0; i < count; ++i) node.child[i] = moves(node.child[i]);
        }
    }
    // every moved node copied out, then written to its new id (names, which
    // few nodes have, by their new ids)
    struct Parts {
        Node node;
        Slot value;
        double grad;
        uint8_t int_mark;
    };
    auto parts_of = [this](NodeId id) {
        return std::tie(nodes_[id], values_[id], grads_[id], ints_[id]);
    };
    std::vector<Parts> parts(n);
    std::vector<std::pair<NodeId, std::string>> labels, op_names;
    for (size_t i = 0; i < n; ++i) {
        const NodeId id = from[i];
        Parts& p = parts[i];
        std::tie(p.node, p.value, p.grad, p.int_mark) = parts_of(id);
        for (auto [flag, names, moved] : {std::make_tuple(kHasLabel, &labels_, &labels),
                                          std::make_tuple(kHasOpName, &op_names_, &op_names)})
            if (p.node.flags & flag) {
                moved->emplace_back(to[i], std::move((*names)[id]));
                names->erase(id);
            }
    }
    for (size_t i = 0; i < n; ++i) {
        const Parts& p = parts[i];
        parts_of(to[i]) = std::tie(p.node, p.value, p.grad, p.int_mark);
    }
    // the ids left behind when the nodes went to a span of free ids
    std::vector<NodeId> taken(to);
    std::sort(taken.begin(), taken.end());
    for (NodeId id : from)
        if (!std::binary_search(taken.begin(), taken.end(), id)) {
            Node& left = nodes_[id];
            left.op = Op::Leaf;  // its list (an n-ary node's) went with it
            left.flags = 0;
            left.refs = 0;
            left.owner = nullptr;
            free_.push_back(id);
            ++frees_since_sort_;
        }
    for (auto& [id, name] : labels) labels_[id] = std::move(name);
    for (auto& [id, name] : op_names) op_names_[id] = std::move(name);
    ++shape_;
}

NodeId Graph::free_span(size_t n) {
    sort_free_list();  // descending: a run of free ids is a run of the list
    for (size_t end = free_.size(); end >= n && n > 0;) {
        size_t begin = end - 1;  // free_[begin] is the run's least id
        while (begin > 0 && free_[begin - 1] == free_[begin] + 1) --begin;
        if (end - begin >= n) {  // the run's n least ids
            const NodeId first = free_[end - 1];
            free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(end - n),
                        free_.begin() + static_cast<std::ptrdiff_t>(end));
            return first;
        }
        end = begin;
    }
    if (nodes_.size() + n >= kConstantEntry) return kNoNode;
    const NodeId first = static_cast<NodeId>(nodes_.size());
    for (size_t i = 0; i < n; ++i) grow();
    return first;
}

NodeId Graph::leaves(const Number* values, size_t n) {
    if (n == 0) return kNoNode;
    const NodeId first = free_span(n);
    if (first == kNoNode) throw std::bad_alloc();
    for (size_t i = 0; i < n; ++i) {
        start_node(static_cast<NodeId>(first + i), Op::Leaf);
        set_value(static_cast<NodeId>(first + i), values[i]);
    }
    return first;
}

Status Graph::power(NodeId base, Number exponent, NodeId* out) {
    Number r;
    Status s = ops::Pow::of_numbers(value(base), exponent, &r);
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
            s = with_binary(n.op,
                            [&](auto entry) { return decltype(entry)::of_numbers(x, y, &r); });
            break;
        }
        case Op::Pow:
            s = ops::Pow::of_numbers(value(nodes_[id].child[0]), param(id), &r);
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
        ++frees_since_sort_;
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
        if (count == 0 || has_list(n.op)) sinks_.push_back(id);  // (sinks())
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
        case Op::Mul:
            return with_binary(n.op, [&](auto entry) {
                using E = decltype(entry);
                const NodeId a = n.child[0];
                const double a_value = value(a).as_double();
                if (n.flags & kInlineConstant) {
                    grads_[a] = E::template chain<F>(grads_[a], param(id).as_double(), g);
                    // zeroed, then its one contribution
                    set_constant_grad<kRule>(n.constant_grad,
                                             E::template chain<F>(0.0, a_value, g));
                } else {
                    const NodeId b = n.child[1];
                    grads_[a] = E::template chain<F>(grads_[a], value(b).as_double(), g);
                    grads_[b] = E::template chain<F>(grads_[b], a_value, g);
                }
                return Status::Ok;
            });
        case Op::Pow: {
            Number k = param(id);
            NodeId a = n.child[0];
            double p;
            Status s = ops::Pow::power_below(value(a).as_double(), exponent_minus_one(k), &p);
            if (s != Status::Ok) return s;
            grads_[a] = F::add_mul(grads_[a], ops::Pow::derivative<F>(k.as_double(), p), g);
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

void Graph::zero_gradients(NodeId id) {
    grads_[id] = 0.0;
    nodes_[id].constant_grad = 0.0;
    if (has_list(nodes_[id].op))
        for (Constant& k : lists_[nodes_[id].child[0]].constants) k.grad = 0.0;
}

void Graph::zero_gradients() {
    for (const Step& step : order_) zero_gradients(step.node);
}

void Graph::keep_schedule(NodeId root) {
    std::unique_ptr<Schedule>& schedule = schedules_[root];
    if (!schedule) schedule = std::make_unique<Schedule>();  // made at the first backward()
    nodes_[root].flags |= kKeepsSchedule;
}

void Graph::forget_schedule(NodeId root) {
    if (!(nodes_[root].flags & kKeepsSchedule)) return;
    schedules_.erase(root);
    nodes_[root].flags &= static_cast<uint8_t>(~kKeepsSchedule);
}

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

// Why a backward pass runs on the hardware first and with the NaN rule only
// if it must: the rule (number.hpp) costs a test at every + and * (+22% on
// a replayed micrograd backward), and it only changes a result whose
// operands are both NaN, which is then a NaN itself.  So it is enough to
// know whether the pass made a NaN anywhere:
// - every + and * result of a step reaches a gradient through + and * (and
//   `1.0 - x`), which keep a NaN a NaN (0 * NaN too): a node's, which is
//   only added to after it is zeroed, or a constant's, which is written once
//   and noted then (write_constant_grad);
// - a node's step runs after every addition into its gradient (reverse
//   topological order) and adds that gradient, times a factor, into every
//   child node's (a fused node through its terms' steps), so a NaN in a
//   node's gradient ends up in a NaN in the gradient of a node without
//   children or a custom node, or in a constant's (a fused node whose terms
//   are all constants).  sinks() holds those nodes, and every fused node.
// So if those gradients hold no NaN at the end, no operation met a NaN and
// the hardware's bits are the rule's; otherwise the pass runs again, from
// the zeroed gradients, with the rule.  A pass is a function of the values
// alone, and an error (pow, a division: values only) stops both passes at
// the same step, so the second pass is exactly the rule's pass.
// A kept schedule (program.cpp) runs the same two passes on its decoded steps.
Status Graph::backward(NodeId root) {
    if (nodes_[root].flags & kKeepsSchedule) return schedules_[root]->run(*this, root);
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
