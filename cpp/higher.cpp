// Second derivatives: agrad.grad's two sweeps on this engine.
//
// python/agrad/higher.py is the specification (agrad.pure runs it, and its
// docstring says why the results are exact); here the same sweeps run over
// the arena, so a Hessian-vector product costs a few gradients rather than
// a Python loop over every node.  Both take backward()'s steps in its order
// (topological_order, with a fused node's per-term steps where it places
// them), skip the nodes that lead to no input (they contribute nothing, nor
// raise their errors), and leave every node's gradient as it was.
//
// - gradients(): backward()'s own pass, propagate() and propagate_term(),
//   always with the NaN rule (as agrad.pure's arithmetic), on gradients set
//   aside and given back afterwards.
// - gradient_graph(): the same sweep with Value operations, each exactly the
//   call a number slot makes for the expression higher.py writes (`b * g` is
//   binary(Mul, b, g), `1.0 - y` is (y * -1) + 1.0, a node's contributions
//   are agrad.sum's node), so the gradient graph has the same nodes, the
//   same bits, and is logged by a recording as eager code would log it.
//   The formulas of the table's entries are theirs (ops.hpp's gradient());
//   +, *, ** and the fused terms are written here, as propagate() writes them.
#include <vector>

#include "agrad/graph.hpp"

namespace agrad {

// The sweep's post-order, each reached node's index in it (local_), and
// whether a node is an input (bit 1) or leads to one through a child (bit 2).
void Graph::find_relevant(NodeId root, const NodeId* inputs, size_t n) {
    topological_order(root, /*zero=*/false);
    if (local_.size() < nodes_.size()) local_.resize(nodes_.size());
    uint32_t count = 0;
    for (const Step& step : order_)
        if (step.term == Step::kWholeNode) local_[step.node] = count++;
    leads_.assign(count, 0);
    for (size_t i = 0; i < n; ++i)
        if (reached(inputs[i])) leads_[local_[inputs[i]]] = 1;
    for (const Step& step : order_) {  // children first
        if (step.term != Step::kWholeNode) continue;
        const size_t children = child_count(step.node);
        for (size_t i = 0; i < children; ++i) {
            const NodeId c = child(step.node, i);
            if (!is_constant(c) && leads_[local_[c]]) {
                leads_[local_[step.node]] |= 2;
                break;
            }
        }
    }
}

Status Graph::gradients(NodeId root, const NodeId* inputs, size_t n, double* out) {
    find_relevant(root, inputs, n);
    aside_.clear();
    aside_constants_.clear();
    for (const Step& step : order_) {
        if (step.term != Step::kWholeNode) continue;
        const Node& node = nodes_[step.node];
        aside_.push_back({grads_[step.node], node.constant_grad});
        grads_[step.node] = 0.0;  // (a constant's gradient is written, never added to)
        if (has_list(node.op))
            for (const Constant& k : lists_[node.child[0]].constants)
                aside_constants_.push_back(k.grad);
    }
    grads_[root] = 1.0;
    Status s = Status::Ok;
    for (size_t i = order_.size(); i-- > 0;) {
        const Step& step = order_[i];
        const uint8_t leads = leads_[local_[step.node]];
        if (!leads) continue;
        if (step.term != Step::kWholeNode) {
            propagate_term<true>(step.node, step.term);
        } else if (leads & 2) {  // (an input's own derivative, toward no input, is not asked)
            s = propagate<true>(step.node);
            if (s != Status::Ok) break;
        }
    }
    if (s == Status::Ok)
        for (size_t i = 0; i < n; ++i) out[i] = reached(inputs[i]) ? grads_[inputs[i]] : 0.0;
    size_t a = 0, k = 0;
    for (const Step& step : order_) {
        if (step.term != Step::kWholeNode) continue;
        Node& node = nodes_[step.node];
        grads_[step.node] = aside_[a].grad;
        node.constant_grad = aside_[a++].constant_grad;
        if (has_list(node.op))
            for (Constant& c : lists_[node.child[0]].constants) c.grad = aside_constants_[k++];
    }
    return s;
}

namespace {

// The Value operations a gradient graph is made of, each the engine call the
// number slot makes (src/agrad_core/value.cpp).  Every node made keeps one
// reference here until the sweep ends.
class Builder {
public:
    using Id = NodeId;
    Builder(Graph& graph, Graph::GuardHook guard) : graph_(graph), guard_(guard) {}
    ~Builder() {
        for (NodeId id : made_) graph_.release(id);
    }
    Builder(const Builder&) = delete;
    Builder& operator=(const Builder&) = delete;

    NodeId leaf(Number value) {
        room();
        return keep(graph_.leaf(value));
    }
    Status mul(NodeId a, NodeId b, NodeId* out) {  // a * b
        room();
        return kept(graph_.binary(Op::Mul, Operand::of_node(a), Operand::of_node(b), out), out);
    }
    Status mul_number(NodeId a, Number k, NodeId* out) {  // a * k
        room();
        return kept(graph_.binary(Op::Mul, Operand::of_node(a), Operand::of_number(k), out), out);
    }
    Status power(NodeId a, Number k, NodeId* out) {  // a ** k
        room();
        return kept(graph_.power(a, k, out), out);
    }
    Status one_minus(NodeId a, NodeId* out) {  // 1.0 - a: a.__rsub__(1.0), (a * -1) + 1.0
        NodeId negated;
        Status s = mul_number(a, Number::of_int(-1), &negated);
        if (s != Status::Ok) return s;
        room();
        return kept(graph_.binary(Op::Add, Operand::of_node(negated),
                                  Operand::of_number(Number::of_float(1.0)), out),
                    out);
    }
    bool positive(NodeId a) {  // a > 0
        const Operand zero = Operand::of_number(Number::of_int(0));
        const bool outcome = holds(Comparison::Greater, order(graph_.value(a), zero.number));
        if (guard_) guard_(Comparison::Greater, a, zero, outcome);
        return outcome;
    }
    Status sum(const std::vector<Operand>& terms, NodeId* out) {  // agrad.sum(terms), from 0
        room();
        return kept(graph_.sum(terms.data(), terms.size(), Number::of_int(0), out), out);
    }

private:
    // Room for the next node's entry before it is made: a node made never
    // goes without its reference (push_back then cannot throw).
    void room() {
        if (made_.size() == made_.capacity()) made_.reserve(2 * made_.size() + 16);
    }
    NodeId keep(NodeId id) {
        made_.push_back(id);
        graph_.retain(id);
        return id;
    }
    Status kept(Status s, const NodeId* out) {
        if (s == Status::Ok) keep(*out);
        return s;
    }
    Graph& graph_;
    Graph::GuardHook guard_;
    std::vector<NodeId> made_;
};

}  // namespace

Status Graph::gradient_graph(NodeId root, const NodeId* inputs, size_t n, GuardHook guard,
                             NodeId* out, NodeId* refused) {
    *refused = kNoNode;
    find_relevant(root, inputs, n);
    // (making nodes touches none of order_, local_ and leads_)
    const std::vector<Step>& order = order_;
    const std::vector<uint32_t>& local = local_;
    const std::vector<uint8_t>& leads = leads_;
    auto relevant = [&](NodeId id) { return !is_constant(id) && leads[local[id]] != 0; };
    Builder b(*this, guard);
    // per reached node: its gradient once settled, and the contributions that
    // arrived so far, a list through `parts` (the first arrival's safety:
    // a gradient passed on unchanged, never -0.0, is 0.0 + itself)
    const size_t count = leads.size();
    std::vector<NodeId> gradient(count, kNoNode);
    struct Part {
        NodeId node;
        uint32_t next;
    };
    constexpr uint32_t kEnd = 0xFFFFFFFFu;
    std::vector<Part> parts;
    std::vector<uint32_t> first(count, kEnd), last(count, kEnd);
    std::vector<uint8_t> first_safe(count, 0);
    auto give = [&](NodeId child, NodeId contribution, bool safe) {
        if (!relevant(child)) return;
        const uint32_t c = local[child];
        const auto index = static_cast<uint32_t>(parts.size());
        parts.push_back({contribution, kEnd});
        if (first[c] == kEnd) {
            first[c] = index;
            first_safe[c] = safe;
        } else {
            parts[last[c]].next = index;
        }
        last[c] = index;
    };
    std::vector<Operand> terms;
    auto settle = [&](NodeId node, NodeId* g) {
        const uint32_t c = local[node];
        if (gradient[c] != kNoNode) {  // the root's seed
            *g = gradient[c];
            return Status::Ok;
        }
        const uint32_t head = first[c];
        if (head == kEnd) {  // (never: a node that leads to an input gets its parent's share)
            *g = b.leaf(Number::of_float(0.0));
        } else if (parts[head].next == kEnd && first_safe[c]) {
            *g = parts[head].node;
        } else {
            terms.clear();
            for (uint32_t p = head; p != kEnd; p = parts[p].next)
                terms.push_back(Operand::of_node(parts[p].node));
            Status s = b.sum(terms, g);  // 0 + c1 + c2 + ..., one node
            if (s != Status::Ok) return s;
        }
        gradient[c] = *g;
        return Status::Ok;
    };
    // A constant operand of a product is, to Python, the leaf _children makes
    // of it: `b * g` with b a Value, b's NaN the left one.
    auto times = [&](NodeId node, NodeId entry, NodeId g, NodeId* c) {
        NodeId left = entry;
        if (is_constant(entry))
            left = b.leaf(lists_[nodes_[node].child[0]].constants[entry & ~kConstantEntry].value);
        return b.mul(left, g, c);
    };
    gradient[local[root]] = b.leaf(Number::of_float(1.0));
    for (size_t i = order.size(); i-- > 0;) {
        const NodeId node = order[i].node;
        if (!relevant(node)) continue;
        NodeId g, c;
        Status s = Status::Ok;
        if (order[i].term != Step::kWholeNode) {  // 0.0 + g is g: a gradient is never -0.0
            g = gradient[local[node]];
            const uint32_t term = order[i].term;
            const std::vector<NodeId>& entries = lists_[nodes_[node].child[0]].entries;
            if (nodes_[node].op == Op::Sum) {
                give(entries[term], g, true);
                continue;
            }
            const NodeId w = entries[term - 1], x = entries[term];
            if (relevant(w)) {
                s = times(node, x, g, &c);
                if (s != Status::Ok) return s;
                give(w, c, false);
            }
            if (relevant(x)) {
                s = times(node, w, g, &c);
                if (s != Status::Ok) return s;
                give(x, c, false);
            }
            continue;
        }
        s = settle(node, &g);
        if (s != Status::Ok) return s;
        const Op op = nodes_[node].op;
        const bool inline_constant = (nodes_[node].flags & kInlineConstant) != 0;
        const NodeId a = nodes_[node].child[0];
        switch (op) {
            case Op::Leaf:
            case Op::Sum:
            case Op::Dot:
                continue;
            case Op::Custom:
                *refused = node;
                return Status::Ok;
            case Op::Add:
            case Op::Mul: {  // the table's entries (ops.hpp), each operand's contribution
                // (a constant operand is, to Python, the leaf _children makes of it)
                const NodeId other = nodes_[node].child[1];
                s = with_binary(op, [&](auto entry) {
                    using E = decltype(entry);
                    Status t = Status::Ok;
                    if (relevant(a)) {
                        auto b_node = [&] { return inline_constant ? b.leaf(param(node)) : other; };
                        t = E::gradient(b, b_node, g, &c);
                        if (t != Status::Ok) return t;
                        give(a, c, c == g);
                    }
                    if (!inline_constant && relevant(other)) {
                        t = E::gradient(b, [a] { return a; }, g, &c);
                        if (t == Status::Ok) give(other, c, c == g);
                    }
                    return t;
                });
                if (s != Status::Ok) return s;
                continue;
            }
            default:
                break;
        }
        if (!relevant(a)) continue;
        if (op == Op::Pow)  // the table's entries (ops.hpp)
            s = ops::Pow::gradient(b, a, param(node), g, &c);
        else
            s = with_unary(
                op, [&](auto entry) { return decltype(entry)::gradient(b, a, node, g, &c); });
        if (s != Status::Ok) return s;
        give(a, c, false);
    }
    NodeId zero = kNoNode;
    for (size_t i = 0; i < n; ++i) {
        if (reached(inputs[i])) {
            out[i] = gradient[local[inputs[i]]];
        } else {  // not in the output's graph
            if (zero == kNoNode) zero = b.leaf(Number::of_float(0.0));
            out[i] = zero;
        }
        retain(out[i]);
    }
    return Status::Ok;
}

}  // namespace agrad
