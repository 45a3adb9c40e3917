// A recorded program, run in both directions (program.hpp): the kept
// backward schedule of a root, and the program agrad.compile keeps.
#include "agrad/program.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <type_traits>
#include <unordered_map>

namespace agrad {

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
    kSumRun,         // kSumTermN steps of one node, merged
    kDotRun,         // kDotTermNN steps of one node, merged
    kDotArrays,      // a kDotRun whose w's and x's are two blocks of consecutive ids (dot_arrays)
    kChainOwned,     // a kChain whose links own their s' and m (owned_links)
    kChainArrays,    // a kChainOwned whose w's, x's and own nodes are blocks (chain_arrays)
    kChainBlocks,    // a kChainOwned whose x's and own nodes are blocks, w's apart (chain_arrays)
    kChain,          // links of a chain of s = s' + w * x, merged (fuse_chains)
    kSumChain,       // links of the builtin sum's chain s = s' + t, merged (fuse_sums)
    kSumChainOwned,  // a kSumChain whose links own their s' (owned_links)
    kPowKeep,        // kPow, keeping its pow(x, k - 1) in powers[b] (share_powers)
    kPowKept,        // kPow, reading its pow(x, k - 1) from powers[b]
    kGroup,          // groups_[a]: steps of one operation, run as one loop (group_independent)
};

// The steps a group may hold: a node's own operation of one or two operands,
// one term of a sum or dot, a run of a node's terms, or a chain of links
// that pass one gradient down (owned_links).  Each reads the gradient of its
// node and adds into its operands' (for_each_target), as run_decoded says.
// (Not a chain that passes its gradient from link to link: taken by height,
// its links and their subtrees lose the locality they have in backward()'s
// order, one sample's nodes after another, and micrograd's demo ran 10%
// slower so.)
bool groupable(uint8_t kind) { return kind <= kChainBlocks; }

// The gradients a groupable step adds into, each as f(id) (a run's terms:
// ids, or w, x pairs, in operands; a run adds each once, in any order).
template <class F>
void for_each_target(uint8_t kind, NodeId a, NodeId b, const NodeId* operands, F&& f) {
    switch (kind) {
        case kAddNN:
        case kMulNN:
        case kDotTermNN:
            f(a);
            f(b);
            return;
        case kDotTermKN:
            f(b);
            return;
        case kSumTermK:
        case kDotTermKK:
            return;  // (only the constants' gradients, in the node's list)
        case kSumRun:
            for (NodeId t = 0; t < b; ++t) f(operands[a + t]);
            return;
        case kDotRun:
        case kDotArrays:
            for (NodeId t = 0; t < 2 * b; ++t) f(operands[a + t]);
            return;
        case kChainOwned:  // each link's s', m, w and x
            for (NodeId t = 0; t < 4 * b; ++t) f(operands[a + t]);
            return;
        case kChainArrays: {  // the blocks of w's, x's and the chain's own s' and m, its bias
            const NodeId* c = operands + a;
            for (NodeId t = 0; t < b; ++t) f(c[0] + t);
            for (NodeId t = 0; t < b; ++t) f(c[1] + t);
            for (NodeId t = 0; t + 1 < 2 * b; ++t) f(c[2] + t);
            f(c[3]);
            return;
        }
        case kChainBlocks: {  // the blocks of x's and own nodes, the bias, each w
            const NodeId* c = operands + a;
            for (NodeId t = 0; t < b; ++t) f(c[0] + t);
            for (NodeId t = 0; t + 1 < 2 * b; ++t) f(c[1] + t);
            f(c[2]);
            for (NodeId t = 0; t < b; ++t) f(c[3 + t]);
            return;
        }
        default:
            f(a);
            return;
    }
}
}  // namespace

Schedule::Decoded Schedule::decode(Graph& graph, const Graph::Step& step) {
    Decoded d{0, step.node, 0, 0};
    // an entry of the node's list: a node's id, or a constant's value and
    // gradient slot, read here once rather than through the node's list at
    // every pass (an MLP's bias is such a term, b * 1, in every neuron of
    // every sample): constants never change in place
    auto operand = [this, &graph, &step](NodeId entry, uint32_t term) {
        if (!Graph::is_constant(entry)) return entry;
        Graph::Constant& k = graph.list_constant(step.node, Graph::constant_index(entry));
        term_constants_.push_back({graph.child_value(step.node, term).as_double(), &k.grad});
        return static_cast<NodeId>(term_constants_.size() - 1);
    };
    if (step.term != Graph::Step::kWholeNode) {
        if (graph.op(step.node) == Op::Sum) {
            NodeId t = graph.child(step.node, step.term);
            d.kind = Graph::is_constant(t) ? kSumTermK : kSumTermN;
            d.a = operand(t, step.term);
            return d;
        }
        NodeId w = graph.child(step.node, step.term - 1), x = graph.child(step.node, step.term);
        d.kind = Graph::is_constant(w) ? (Graph::is_constant(x) ? kDotTermKK : kDotTermKN)
                                       : (Graph::is_constant(x) ? kDotTermNK : kDotTermNN);
        d.a = operand(w, step.term - 1);
        d.b = operand(x, step.term);
        return d;
    }
    d.kind = graph.node_kind(step.node);  // make() keeps no other whole-node step
    d.a = graph.child(step.node, 0);
    if (d.kind == kAddNN || d.kind == kMulNN) d.b = graph.child(step.node, 1);
    // the node's constant, read from the node here once, not at every pass
    // (a node is 48 bytes, and a mixed graph's nodes are cache misses)
    const Number k = graph.param(step.node);
    if (d.kind == kMulNK) {
        term_constants_.push_back({k.as_double(), nullptr});
        d.b = static_cast<NodeId>(term_constants_.size() - 1);
    }
    if (d.kind == kPow) {
        pow_constants_.push_back({k.as_double(), exponent_minus_one(k), 0});
        d.b = static_cast<NodeId>(pow_constants_.size() - 1);
    }
    return d;
}

// Node ids as [begin, end) pairs of consecutive ids, ascending.  A recording
// takes its nodes in ascending ids, so the reached nodes (or the sinks: the
// chapter's 2,000 inputs) are mostly a few long spans, each a block that
// one loop zeroes or checks.
static std::vector<NodeId> spans_of(std::vector<NodeId> ids) {
    std::sort(ids.begin(), ids.end());
    std::vector<NodeId> spans;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i == 0 || ids[i] != ids[i - 1] + 1) spans.insert(spans.end(), {ids[i], ids[i]});
        ++spans.back();
    }
    return spans;
}

// The search's order, as backward() would take it, kept, decoded.
void Schedule::make(Graph& graph, NodeId root) {
    const std::vector<Graph::Step>& order = graph.search(root);  // zeroes the reached gradients
    shape_ = 0;  // until it is complete: an allocation may fail below
    std::vector<NodeId> reached;
    steps_.clear();
    term_constants_.clear();
    pow_constants_.clear();
    for (const Graph::Step& step : order) {
        if (step.term != Graph::Step::kWholeNode) {
            steps_.push_back(decode(graph, step));
            continue;
        }
        reached.push_back(step.node);
        switch (graph.op(step.node)) {
            case Op::Leaf:
            case Op::Custom:
            case Op::Sum:
            case Op::Dot:
                break;  // propagate() does nothing for these
            default:
                steps_.push_back(decode(graph, step));
        }
    }
    spans_ = spans_of(std::move(reached));
    sink_spans_ = spans_of(graph.sinks());
    merge_runs();
    const std::vector<uint8_t> adders = count_adders(graph.id_limit());
    gather_links(graph.id_limit());
    fuse_chains(adders);
    share_powers(graph);
    group_independent(graph.id_limit());
    fuse_sums(adders);
    floats_since_ = kNever;
    shape_ = graph.shape();
}

void Schedule::merge_runs() {
    std::vector<Decoded>& steps = steps_;
    operands_.clear();
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
                    static_cast<NodeId>(operands_.size()), static_cast<NodeId>(j - i)};
        for (size_t k = i; k < j; ++k) {
            operands_.push_back(steps[k].a);
            if (first.kind == kDotTermNN) operands_.push_back(steps[k].b);
        }
        if (run.kind == kDotRun && dot_arrays(operands_.data() + run.a, run.b))
            run.kind = kDotArrays;
        steps[out++] = run;
        i = j;
    }
    steps.resize(out);
}

// Whether a dot's run of terms (w, x pairs) may run as loops over arrays:
// its w's are one block of consecutive ids and its x's another, paired in
// the same order, the two blocks apart (an MLP's neuron: its weights, made
// one after another, and the layer below's outputs for one sample, which
// Program::lay_out places side by side).  Each term then adds into its own
// two gradients, none another's, so the terms may run in any order; they
// are put in ascending ids, the lowest pair first.
bool Schedule::dot_arrays(NodeId* pairs, size_t n) {
    constexpr size_t kMinTerms = 4;  // fewer gain nothing from a loop
    if (n < kMinTerms) return false;
    const int64_t step = pairs[2] > pairs[0] ? 1 : -1;
    if (!is_block(pairs, n, 2, pairs[0], step) || !is_block(pairs + 1, n, 2, pairs[1], step))
        return false;
    const NodeId w0 = step > 0 ? pairs[0] : pairs[2 * (n - 1)];
    const NodeId x0 = step > 0 ? pairs[1] : pairs[2 * (n - 1) + 1];
    if (w0 < x0 + n && x0 < w0 + n) return false;  // the blocks overlap
    for (size_t j = 0; j < n; ++j) {
        pairs[2 * j] = static_cast<NodeId>(w0 + j);
        pairs[2 * j + 1] = static_cast<NodeId>(x0 + j);
    }
    return true;
}

// How many steps add into each node's gradient: 0, 1, or 2 for more.
std::vector<uint8_t> Schedule::count_adders(size_t id_limit) const {
    std::vector<uint8_t> adders(id_limit, 0);
    for (const Decoded& step : steps_)
        for_each_target(step.kind, step.a, step.b, operands_.data(), [&adders](NodeId id) {
            adders[id] = static_cast<uint8_t>(std::min(adders[id] + 1, 2));
        });
    return adders;
}

// A chain's links pass the gradient down, each link's addition adding it
// into its s' (then s'' from s', ...), one addition after another: about 3
// cycles a link that wait for each other.  When no other step adds into any
// s' but the bottom link's (nor, for w * x links, into any m), each of their
// gradients is 0 + what comes down, zeroed at the start of the pass: 0 + g
// at the top, and below it 0 + (0 + g), the same number (0 + g is no -0, and
// a NaN comes through an addition to 0 as itself).  So the links of such a
// chain all take d = 0 + g, computed once, and wait for nothing.  The bottom
// link's s' (micrograd's bias, a parameter) adds d as before.
//
// `links` holds `count` links of `width` ids each, the link's s' first and
// (when `product`) its m second, from the top link down.
static bool owned_links(const std::vector<uint8_t>& adders, const NodeId* links, size_t count,
                        size_t width, bool product) {
    for (size_t l = 0; l < count; ++l, links += width) {
        if (l + 1 < count && adders[links[0]] != 1) return false;
        if (product && adders[links[1]] != 1) return false;
    }
    return true;
}

// Whether an owned chain's links (owned_links) may run as loops over
// arrays: its x's are one block of consecutive ids (the layer below's
// outputs for one sample, laid out side by side) and its own s' and m
// another (a chain made link by link, laid out in place), and its w's are
// different nodes outside them (a neuron's weights: one block too where the
// user made them one after another, kChainArrays, else scattered over the
// holes of a used arena, kChainBlocks).  Each w and x then gets one
// addition, none another's, in any order, and the bottom link's s' (the
// bias) none of theirs.  (Only for owned chains: no w, x or bias is then one
// of the chain's own nodes, which the pass fills.)  *out: for kChainArrays
// the first w, the first x, the first own node and the bias; for
// kChainBlocks the first x, the first own node, the bias and each w, paired
// with the x's in order.
static uint8_t chain_arrays(const NodeId* links, size_t n, std::vector<NodeId>* out) {
    constexpr size_t kMinLinks = 4;  // fewer gain nothing from a loop
    if (n < kMinLinks) return 0;
    const NodeId x_top = links[3];
    const bool up = links[7] > x_top;  // (the link below the top: ids ascending downward)
    if (!is_block(links + 3, n, 4, x_top, up ? 1 : -1)) return 0;
    NodeId own_lo = links[1], own_hi = links[1];
    std::vector<NodeId> w(n);  // in the x's order, ascending
    for (size_t l = 0; l < n; ++l) {
        const NodeId* link = links + 4 * l;
        w[up ? l : n - 1 - l] = link[2];
        own_lo = std::min(own_lo, link[1]);
        own_hi = std::max(own_hi, link[1]);
        if (l + 1 < n) {
            own_lo = std::min(own_lo, link[0]);
            own_hi = std::max(own_hi, link[0]);
        }
    }
    // (the own nodes are 2n - 1 different nodes: filling their span is exact)
    if (own_hi - own_lo != 2 * n - 2) return 0;
    const NodeId x0 = up ? x_top : x_top - static_cast<NodeId>(n - 1);
    const NodeId bias = links[4 * (n - 1)];
    auto in = [](NodeId id, NodeId first, size_t count) {
        return id >= first && id < first + count;
    };
    std::vector<NodeId> sorted(w);
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) return 0;
    for (NodeId id : sorted)
        if (in(id, x0, n) || id == bias) return 0;
    if (in(bias, x0, n)) return 0;
    if (is_block(w.data(), n, 1, w[0], 1)) {
        *out = {w.front(), x0, own_lo, bias};
        return kChainArrays;
    }
    *out = {x0, own_lo, bias};
    out->insert(out->end(), w.begin(), w.end());
    return kChainBlocks;
}

// Is steps[i] an addition s = s' + m (or m + s') and steps[i + step] its
// product m = w * x, a link of a chain that reads neither s' nor m again?
// (step: -1 in steps_, whose end backward() takes first; 1 in that order)
bool Schedule::is_link(const std::vector<Decoded>& steps, size_t i, ptrdiff_t step, NodeId* below,
                       NodeId* product) {
    const size_t j = i + step;
    if (j >= steps.size()) return false;
    const Decoded& add = steps[i];
    const Decoded& mul = steps[j];
    if (add.kind != kAddNN || mul.kind != kMulNN || add.a == add.b) return false;
    if (mul.node != add.a && mul.node != add.b) return false;
    *product = mul.node;
    *below = mul.node == add.a ? add.b : add.a;
    return mul.a != *below && mul.b != *below && mul.a != *product && mul.b != *product;
}

// backward() takes a node as soon as its last parent is done, so the links
// of a neuron reading the layer below (micrograd's s = s' + w * x, x that
// layer's output) are not one after another: after the link whose x has no
// other parent left come x's own step and its whole subtree, and only then
// the next link.  Those steps move after the chain's last link when that
// changes no gradient's additions: none of them reads or adds into the
// gradient of a node a later link reads or adds into.  Their own order is
// kept and links cannot fail, so a pass fails at the same step as before.
void Schedule::gather_links(size_t id_limit) {
    std::vector<Decoded> order(steps_.rbegin(), steps_.rend());  // backward()'s order
    constexpr uint32_t kNone = UINT32_MAX;
    std::vector<uint32_t> at(id_limit, kNone);  // where a node's own step is in order
    for (size_t i = 0; i < order.size(); ++i)
        if (order[i].kind < kNodeKinds) at[order[i].node] = static_cast<uint32_t>(i);
    // the gradients the moved steps read or add into: touched[id] == stamp
    std::vector<uint32_t> touched(id_limit, 0);
    uint32_t stamp = 0;
    std::vector<Decoded> links, moved;
    for (size_t i = 0; i < order.size();) {
        NodeId below, product;
        if (!is_link(order, i, 1, &below, &product)) {
            ++i;
            continue;
        }
        ++stamp;
        links.clear();
        moved.clear();
        size_t top = i;  // the link being added: order[top], order[top + 1]
        for (;;) {
            links.insert(links.end(), {order[top], order[top + 1]});
            const uint32_t next = at[below];
            NodeId next_below, next_product;
            if (next == kNone || next <= top + 1 ||
                !is_link(order, next, 1, &next_below, &next_product))
                break;
            const Decoded& mul = order[next + 1];
            const size_t first_moved = moved.size();
            for (size_t j = top + 2; j < next; ++j) {
                const Decoded& step = order[j];
                touched[step.node] = stamp;
                for_each_target(step.kind, step.a, step.b, operands_.data(),
                                [&](NodeId id) { touched[id] = stamp; });
                moved.push_back(step);
            }
            bool clash = false;
            for (NodeId id : {below, next_below, next_product, mul.a, mul.b})
                clash |= touched[id] == stamp;
            if (clash) {
                moved.resize(first_moved);
                break;
            }
            top = next;
            below = next_below;
            product = next_product;
        }
        if (!moved.empty()) {  // order[i, top + 2) becomes the links, then the moved steps
            std::copy(links.begin(), links.end(), order.begin() + i);
            std::copy(moved.begin(), moved.end(), order.begin() + i + links.size());
            for (size_t j = i; j < top + 2; ++j)
                if (order[j].kind < kNodeKinds) at[order[j].node] = static_cast<uint32_t>(j);
        }
        i += links.size();  // the moved steps may hold chains of their own
    }
    steps_.assign(order.rbegin(), order.rend());
}

// micrograd's neuron, sum((w * x for ...), b), is a chain of links s = s' + m,
// m = w * x; backward takes each link's two steps (the addition's, then the
// product's) and then the link below.  As one kChain step the gradient passed
// down the chain stays in a register rather than being stored and loaded
// back: the same additions in the same order.  A link whose product reads s'
// or m is left alone (its steps would change that gradient again).
void Schedule::fuse_chains(const std::vector<uint8_t>& adders) {
    std::vector<Decoded>& steps = steps_;
    auto link = [&steps](size_t i, NodeId* below, NodeId* product) {
        return is_link(steps, i, -1, below, product);
    };
    std::vector<Decoded> fused;
    fused.reserve(steps.size());
    std::vector<NodeId> blocks;
    // from the end, the order backward() takes them; reversed again after
    for (size_t i = steps.size(); i-- > 0;) {
        NodeId below, product;
        if (!link(i, &below, &product)) {
            fused.push_back(steps[i]);
            continue;
        }
        Decoded chain{kChain, steps[i].node, static_cast<NodeId>(operands_.size()), 0};
        const size_t top_link = i;
        for (;;) {
            const Decoded& mul = steps[i - 1];
            operands_.insert(operands_.end(), {below, product, mul.a, mul.b});
            ++chain.b;
            const NodeId top = below;
            if (i < 2 || !link(i - 2, &below, &product) || steps[i - 2].node != top) {
                i -= 1;  // the loop's i-- takes the product's step too
                break;
            }
            i -= 2;
        }
        if (chain.b == 1) {  // one link, w * x + b, gains nothing: its steps may join groups
            operands_.resize(operands_.size() - 4);
            fused.insert(fused.end(), {steps[top_link], steps[top_link - 1]});
            continue;
        }
        if (owned_links(adders, operands_.data() + chain.a, chain.b, 4, true)) {
            chain.kind = kChainOwned;
            if (uint8_t kind = chain_arrays(operands_.data() + chain.a, chain.b, &blocks)) {
                chain.kind = kind;
                operands_.resize(chain.a);
                operands_.insert(operands_.end(), blocks.begin(), blocks.end());
            }
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
void Schedule::share_powers(const Graph& graph) {
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
    powers_.clear();
    std::vector<Decoded>& steps = steps_;
    for (size_t i = steps.size(); i-- > 0;) {  // backward's order
        Decoded& step = steps[i];
        if (step.kind != kPow) continue;
        const Number k = graph.param(step.node);
        Key key{0, step.a, k.is_int};
        if (k.is_int)
            std::memcpy(&key.k, &k.i, sizeof key.k);
        else
            std::memcpy(&key.k, &k.f, sizeof key.k);
        auto [at, fresh] = first.try_emplace(key, i);
        if (fresh) continue;
        Decoded& keeper = steps[at->second];
        if (keeper.kind == kPow) {
            keeper.kind = kPowKeep;
            pow_constants_[keeper.b].shared = static_cast<NodeId>(powers_.size());
            powers_.push_back(0.0);
        }
        step.kind = kPowKept;
        pow_constants_[step.b].shared = pow_constants_[keeper.b].shared;
    }
}

// w of the chapter's 1000 products w * x, b of its 1000 sums w * x + b: an
// operand of a + or * that is the same node in every member of a group, and
// neither the other operand nor the node of any, so that no other member
// reads or writes its gradient.  Its additions then come in a row, in the
// group's order, and can be summed in a register (run_shared) rather than
// stored and loaded back at every member.
int8_t Schedule::shared_operand(uint8_t kind, const size_t* members, size_t count) const {
    if (kind != kAddNN && kind != kMulNN) return -1;
    const Decoded& first = steps_[members[0]];
    for (int8_t which = 0; which < 2; ++which) {
        const NodeId shared = which == 0 ? first.a : first.b;
        bool ok = true;
        for (size_t i = 0; ok && i < count; ++i) {
            const Decoded& d = steps_[members[i]];
            const NodeId mine = which == 0 ? d.a : d.b, other = which == 0 ? d.b : d.a;
            ok = mine == shared && other != shared && d.node != shared;
        }
        if (ok) return which;
    }
    return -1;
}

// The steps of a pass in another order, with the same bits: a step reads its
// node's gradient, complete once every step that adds into it has run, and
// adds into its operands' gradients, where the order of the additions into
// each gradient decides the bits.  So steps are taken by height (0 for a step
// whose operands have no step here, else 1 + the highest of their steps'),
// highest first: every step that adds into a node runs before the node's
// step.  The steps of one operation at one height (the chapter's 1000
// squares, then its 1000 subtractions, ...) become one group, run as one
// loop, in the order backward() takes them; and the new order is kept only
// if it adds into every gradient in backward()'s order (a parameter such as
// w gets its 1000 products' contributions from one group, in order), else
// the steps stay as they were.  To keep that order where one gradient gets
// additions from steps of several kinds (an MLP's weight, from every
// sample's dot and from the regulariser's p * p), a step is raised to the
// height of any step adding into the same gradient later in the pass, or
// one above it if their kinds differ.  Below a chain of sums (the builtin
// sum's s = s' + t), the chain's steps have the greatest heights and run
// first, so every term's subtree is ready at once.  Steps of other kinds
// (chains, shared powers: groupable) stay where they are, and steps move
// only between them.  A group's failing step may not be the first to
// fail in backward()'s order: run() then runs the pass again in that order.
void Schedule::group_independent(size_t id_limit) {
    constexpr size_t kMinGroup = 4;  // fewer are left as steps
    grouped_.clear();
    groups_.clear();
    members_.clear();
    // while a segment is ordered: the highest step reading a node's gradient
    std::vector<int32_t> reader(id_limit, -1);
    std::vector<uint32_t> height;
    std::vector<size_t> last(id_limit, SIZE_MAX);  // while checking: the last addition's step
    // while a segment is ordered: the greatest height of a step adding into a
    // node's gradient, and that step's kind
    std::vector<int32_t> adder(id_limit, -1);
    std::vector<uint8_t> adder_kind(id_limit, 0);
    std::vector<size_t> order;  // the segment's steps in the new order
    std::vector<std::vector<size_t>> by_kind(kGroup);
    std::vector<uint8_t> kinds;
    std::vector<std::pair<size_t, size_t>> runs;  // [begin, end) of order: one kind at one height
    const std::vector<Decoded>& steps = steps_;
    auto targets_of = [&steps, this](size_t j, auto f) {
        for_each_target(steps[j].kind, steps[j].a, steps[j].b, operands_.data(), f);
    };
    // In backward()'s order: from the last step to the first.  Segments of
    // groupable steps, each [lo, hi] in steps_, taken from hi down to lo.
    for (size_t end = steps.size(); end > 0;) {
        if (!groupable(steps[end - 1].kind)) {
            grouped_.push_back(steps[--end]);
            continue;
        }
        size_t lo = end - 1;
        while (lo > 0 && groupable(steps[lo - 1].kind)) --lo;
        const size_t hi = end - 1;
        end = lo;
        // heights, from the steps backward() takes last
        height.assign(hi - lo + 1, 0);
        uint32_t top = 0;
        for (size_t j = lo; j <= hi; ++j) {
            int32_t h = 0;
            const uint8_t kind = steps[j].kind;
            targets_of(j, [&](NodeId t) {
                if (reader[t] >= 0) h = std::max(h, reader[t] + 1);
                // a step that adds into t after this one in backward()'s
                // order has been seen: this one runs first, higher, or at
                // its height if of its kind (one group, in backward()'s order)
                if (adder[t] >= 0) h = std::max(h, adder[t] + (adder_kind[t] == kind ? 0 : 1));
            });
            targets_of(j, [&](NodeId t) {
                if (h >= adder[t]) {
                    adder[t] = h;
                    adder_kind[t] = kind;
                }
            });
            height[j - lo] = static_cast<uint32_t>(h);
            top = std::max(top, height[j - lo]);
            reader[steps[j].node] = std::max(reader[steps[j].node], h);
        }
        // the new order: heights from the top down, each height's steps by kind
        // in order of first appearance, each kind's in backward()'s order
        std::vector<std::vector<size_t>> at_height(top + 1);
        for (size_t j = hi + 1; j-- > lo;) at_height[height[j - lo]].push_back(j);
        order.clear();
        runs.clear();
        for (uint32_t h = top + 1; h-- > 0;) {
            for (size_t j : at_height[h]) {
                const uint8_t kind = steps[j].kind;
                if (by_kind[kind].empty()) kinds.push_back(kind);
                by_kind[kind].push_back(j);
            }
            for (uint8_t kind : kinds) {
                runs.push_back({order.size(), order.size() + by_kind[kind].size()});
                order.insert(order.end(), by_kind[kind].begin(), by_kind[kind].end());
                by_kind[kind].clear();
            }
            kinds.clear();
        }
        // kept only if every gradient gets its additions in backward()'s order
        bool kept = true;
        for (size_t j : order)
            targets_of(j, [&](NodeId t) {
                if (last[t] != SIZE_MAX && last[t] < j) kept = false;
                last[t] = j;
            });
        for (size_t j = lo; j <= hi; ++j) {
            targets_of(j, [&](NodeId t) {
                last[t] = SIZE_MAX;
                adder[t] = -1;
            });
            reader[steps[j].node] = -1;
        }
        if (!kept) {
            for (size_t j = hi + 1; j-- > lo;) grouped_.push_back(steps[j]);
            continue;
        }
        for (auto [begin, stop] : runs) {
            if (stop - begin < kMinGroup) {
                for (size_t i = begin; i < stop; ++i) grouped_.push_back(steps[order[i]]);
                continue;
            }
            grouped_.push_back({kGroup, 0, static_cast<NodeId>(groups_.size()), 0});
            const uint8_t kind = steps[order[begin]].kind;
            groups_.push_back({kind, shared_operand(kind, order.data() + begin, stop - begin),
                               static_cast<uint32_t>(members_.size()),
                               static_cast<uint32_t>(stop - begin)});
            for (size_t i = begin; i < stop; ++i) members_.push_back(steps[order[i]]);
            set_arrays(groups_.back());
        }
    }
    // grouped_ was made in backward()'s order; a pass takes steps from the end
    std::reverse(grouped_.begin(), grouped_.end());
    if (groups_.empty()) grouped_.clear();  // nothing gained: the pass runs steps_
}

// The chain rule of a + b (kAddNN) and a * b (kMulNN) on the gradients of
// a and b, a's first, by the table's entry (ops.hpp): one formula for a step
// of its own and for a member of a group whose shared operand's gradient is
// a register (run_shared).
template <class F, uint8_t kKind>
AGRAD_ALWAYS_INLINE void binary_chain_rule(double g, double a_value, double b_value, double& a_grad,
                                           double& b_grad) {
    using E = typename KindEntry<kKind>::type;
    a_grad = E::template chain<F>(a_grad, b_value, g);
    b_grad = E::template chain<F>(b_grad, a_value, g);
}

// A node's value as a double: straight from the slot when every value the
// pass reads is a float (kFloats), else through its int mark.
template <bool kFloats>
AGRAD_ALWAYS_INLINE double read_number(const Graph& graph, const Graph::Slot* values, NodeId m) {
    if (kFloats) return values[m].f;
    return graph.value(m).as_double();
}

// The terms w * x of a dot (or a chain's links) whose w's are the block
// [w0, w0 + n) and x's [x0, x0 + n), apart: each w and x gets its one
// addition, the product of the other and `link`, as loops over arrays
// (vectorised on the hardware, kRule's pass one term at a time).  (With
// the w's through their ids, as kChainBlocks has them, GCC vectorises
// nothing, and a dot's backward was half again as slow through such a
// shared loop.)
template <class F, bool kFloats>
AGRAD_ALWAYS_INLINE void add_products(Graph& graph, NodeId w0, NodeId x0, size_t n, double link) {
    double* __restrict w_grads = graph.grad_slots() + w0;
    double* __restrict x_grads = graph.grad_slots() + x0;
    const Graph::Slot* values = graph.value_slots();
    if constexpr (kFloats) {
        const double* w = reinterpret_cast<const double*>(values + w0);
        const double* x = reinterpret_cast<const double*>(values + x0);
        for (size_t j = 0; j < n; ++j) {
            w_grads[j] = ops::Mul::chain<F>(w_grads[j], x[j], link);
            x_grads[j] = ops::Mul::chain<F>(x_grads[j], w[j], link);
        }
    } else {
        for (size_t j = 0; j < n; ++j) {
            const double w = read_number<false>(graph, values, w0 + j);
            const double x = read_number<false>(graph, values, x0 + j);
            w_grads[j] = ops::Mul::chain<F>(w_grads[j], x, link);
            x_grads[j] = ops::Mul::chain<F>(x_grads[j], w, link);
        }
    }
}

// propagate() and propagate_term() on a decoded step: the same formulas,
// operation for operation, on operands found when the schedule was made.
// (inlined into pass()'s loop: as the one caller of the old single-pass
// code it was, and out of line a pass costs a call a step)
template <bool kFloats, bool kRule>
AGRAD_ALWAYS_INLINE Status Schedule::run_decoded(Graph& graph, const Decoded& step,
                                                 const NodeId* operands, double* powers,
                                                 bool* nan_seen) {
    using F = Arith<kRule>;
    double* grads = graph.grad_slots();
    const Graph::Slot* values = graph.value_slots();
    auto number = [&graph, values](NodeId m) { return read_number<kFloats>(graph, values, m); };
    auto set_constant_grad = [nan_seen](double& slot, double g) {
        write_constant_grad<kRule>(slot, g, nan_seen);
    };
    const double g = grads[step.node];
    switch (step.kind) {
        case kAddNN:
            binary_chain_rule<F, kAddNN>(g, 0.0, 0.0, grads[step.a], grads[step.b]);
            return Status::Ok;
        case kAddNK:
            grads[step.a] = ops::Add::chain<F>(grads[step.a], 0.0, g);
            set_constant_grad(graph.constant_grad(step.node), ops::Add::chain<F>(0.0, 0.0, g));
            return Status::Ok;
        case kMulNN:
            binary_chain_rule<F, kMulNN>(g, number(step.a), number(step.b), grads[step.a],
                                         grads[step.b]);
            return Status::Ok;
        case kMulNK:
            grads[step.a] = ops::Mul::chain<F>(grads[step.a], term_constants_[step.b].value, g);
            set_constant_grad(graph.constant_grad(step.node),
                              ops::Mul::chain<F>(0.0, number(step.a), g));
            return Status::Ok;
        case kPow:
        case kPowKeep:
        case kPowKept: {
            const PowConstant& k = pow_constants_[step.b];
            double p;
            if (step.kind == kPowKept) {
                p = powers[k.shared];
            } else {
                Status s = ops::Pow::power_below(number(step.a), k.minus_one, &p);
                if (s != Status::Ok) return s;
                if (step.kind == kPowKeep) powers[k.shared] = p;
            }
            grads[step.a] = F::add_mul(grads[step.a], ops::Pow::derivative<F>(k.value, p), g);
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
            set_constant_grad(*term_constants_[step.a].grad, F::add(0.0, F::add(0.0, g)));
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
            const TermConstant& x = term_constants_[step.b];
            const double wv = number(step.a);
            grads[step.a] = F::add_mul(grads[step.a], x.value, link);
            set_constant_grad(*x.grad, F::add_mul(0.0, wv, link));
            return Status::Ok;
        }
        case kDotTermKN: {
            const double link = F::add(0.0, g);
            const TermConstant& w = term_constants_[step.a];
            const double xv = number(step.b);
            set_constant_grad(*w.grad, F::add_mul(0.0, xv, link));
            grads[step.b] = F::add_mul(grads[step.b], w.value, link);
            return Status::Ok;
        }
        case kSumRun: {  // backward takes a run's terms last first
            const double link = F::add(0.0, g);
            const NodeId* ids = operands + step.a;
            for (size_t t = step.b; t-- > 0;) grads[ids[t]] = F::add(grads[ids[t]], link);
            return Status::Ok;
        }
        case kSumChain: {  // each link's s' and t get the gradient passed down
            double down = g;
            const NodeId* link = operands + step.a;
            for (NodeId l = 0; l < step.b; ++l, link += 2) {
                const double to_below = F::add(grads[link[0]], down);
                grads[link[0]] = to_below;
                grads[link[1]] = F::add(grads[link[1]], down);
                down = to_below;
            }
            return Status::Ok;
        }
        case kSumChainOwned: {  // (owned_links) every s' gets d; the top link's t gets g
            const double d = F::add(0.0, g);
            const NodeId* link = operands + step.a;
            grads[link[0]] = d;
            grads[link[1]] = F::add(grads[link[1]], g);
            for (NodeId l = 1; l + 1 < step.b; ++l) {
                link += 2;
                grads[link[0]] = d;
                grads[link[1]] = F::add(grads[link[1]], d);
            }
            link += 2;  // the bottom link, whose s' is not the chain's own
            grads[link[0]] = F::add(grads[link[0]], d);
            grads[link[1]] = F::add(grads[link[1]], d);
            return Status::Ok;
        }
        case kChainOwned: {  // (owned_links) every s' and m gets d, and so w and x
            const double d = F::add(0.0, g);
            const NodeId* link = operands + step.a;
            for (NodeId l = 0; l < step.b; ++l, link += 4) {
                const NodeId below = link[0], product = link[1], w = link[2], x = link[3];
                grads[below] = l + 1 < step.b ? d : F::add(grads[below], d);
                grads[product] = d;
                const double wv = number(w), xv = number(x);
                grads[w] = F::add_mul(grads[w], xv, d);
                grads[x] = F::add_mul(grads[x], wv, d);
            }
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
        case kDotArrays:  // (dot_arrays)
            add_products<F, kFloats>(graph, operands[step.a], operands[step.a + 1], step.b,
                                     F::add(0.0, g));
            return Status::Ok;
        // (chain_arrays) kChainOwned's additions as loops: its own s' and m
        // filled with d, the bias added d, each w and x its product with d
        case kChainArrays:
        case kChainBlocks: {
            const double d = F::add(0.0, g);
            const NodeId* c = operands + step.a;
            const bool w_block = step.kind == kChainArrays;
            const NodeId x0 = c[w_block], own = c[w_block + 1], bias = c[w_block + 2];
            std::fill(grads + own, grads + own + 2 * step.b - 1, d);
            grads[bias] = F::add(grads[bias], d);
            if (w_block) {
                add_products<F, kFloats>(graph, c[0], x0, step.b, d);
            } else {
                const NodeId* w = c + 3;
                double* __restrict x_grads = grads + x0;
                for (NodeId j = 0; j < step.b; ++j) {
                    const double wv = number(w[j]), xv = number(x0 + j);
                    grads[w[j]] = ops::Mul::chain<F>(grads[w[j]], xv, d);
                    x_grads[j] = ops::Mul::chain<F>(x_grads[j], wv, d);
                }
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
            const TermConstant& w = term_constants_[step.a];
            const TermConstant& x = term_constants_[step.b];
            set_constant_grad(*w.grad, F::add_mul(0.0, x.value, link));
            set_constant_grad(*x.grad, F::add_mul(0.0, w.value, link));
            return Status::Ok;
        }
    }
}

// Every kind a group may hold (groupable): a node's own operation, a term.
#define AGRAD_UNARY_KIND(name, ...) X(k##name)
#define AGRAD_GROUPABLE_KINDS(X)      \
    X(kAddNN)                         \
    X(kAddNK)                         \
    X(kMulNN)                         \
    X(kMulNK)                         \
    X(kPow)                           \
    AGRAD_UNARY_OPS(AGRAD_UNARY_KIND) \
    X(kSumTermN)                      \
    X(kSumTermK)                      \
    X(kDotTermNN)                     \
    X(kDotTermNK)                     \
    X(kDotTermKN)                     \
    X(kDotTermKK) X(kSumRun) X(kDotRun) X(kDotArrays) X(kChainOwned) X(kChainArrays) X(kChainBlocks)

// A group of + or * steps with a shared operand (shared_operand): each
// member's chain rule, with the shared operand's gradient a register that
// the members add into in their order.
template <bool kFloats, bool kRule>
AGRAD_ALWAYS_INLINE Status Schedule::run_shared(Graph& graph, const Group& group,
                                                const Decoded* members) {
    using F = Arith<kRule>;
    double* grads = graph.grad_slots();
    const Graph::Slot* values = graph.value_slots();
    auto number = [&graph, values](NodeId m) { return read_number<kFloats>(graph, values, m); };
    auto members_add = [&](auto kind, auto a_shared) {
        constexpr uint8_t kKind = decltype(kind)::value;
        constexpr bool kAShared = decltype(a_shared)::value;
        const NodeId shared = kAShared ? members[0].a : members[0].b;
        const double shared_value = number(shared);
        double sum = grads[shared];
        for (uint32_t t = 0; t < group.count; ++t) {
            const Decoded& d = members[t];
            const double g = grads[d.node];
            if constexpr (kAShared)
                binary_chain_rule<F, kKind>(g, shared_value, number(d.b), sum, grads[d.b]);
            else
                binary_chain_rule<F, kKind>(g, number(d.a), shared_value, grads[d.a], sum);
        }
        grads[shared] = sum;
    };
    using A = std::true_type;
    using B = std::false_type;
    using Add = std::integral_constant<uint8_t, kAddNN>;
    using Mul = std::integral_constant<uint8_t, kMulNN>;
    if (group.kind == kAddNN)
        group.shared == 0 ? members_add(Add{}, A{}) : members_add(Add{}, B{});
    else
        group.shared == 0 ? members_add(Mul{}, A{}) : members_add(Mul{}, B{});
    return Status::Ok;
}

// The builtin sum's chain s = s' + t (the chapter's loss), in a pass grouped
// by height: its steps have the greatest heights and run one after another,
// before the terms' groups, each passing its gradient to the s' below, whose
// step comes next, complete.  As one step (kSumChain: operands_ holds each
// link's s' and t, from the top) the gradient passed down stays in a
// register; every gradient gets the same additions in the same order.
void Schedule::fuse_sums(const std::vector<uint8_t>& adders) {
    auto is_addition = [](const Decoded& d) { return d.kind == kAddNN && d.a != d.b; };
    auto reads = [](const Decoded& d, NodeId id) { return d.a == id || d.b == id; };
    std::vector<Decoded> fused;
    fused.reserve(grouped_.size());
    // from the end, the order a pass takes them; reversed again after
    for (size_t i = grouped_.size(); i-- > 0;) {
        size_t bottom = i;  // the chain: grouped_[bottom..i], run from i down
        while (bottom > 0 && is_addition(grouped_[bottom]) && is_addition(grouped_[bottom - 1]) &&
               reads(grouped_[bottom], grouped_[bottom - 1].node))
            --bottom;
        if (bottom == i) {  // one link gains nothing
            fused.push_back(grouped_[i]);
            continue;
        }
        Decoded chain{kSumChain, grouped_[i].node, static_cast<NodeId>(operands_.size()), 0};
        for (size_t k = i;; --k) {
            const Decoded& d = grouped_[k];
            const NodeId below = k > bottom && grouped_[k - 1].node == d.b ? d.b : d.a;
            operands_.insert(operands_.end(), {below, below == d.a ? d.b : d.a});
            ++chain.b;
            if (k == bottom) break;
        }
        if (owned_links(adders, operands_.data() + chain.a, chain.b, 2, false))
            chain.kind = kSumChainOwned;
        fused.push_back(chain);
        i = bottom;
    }
    std::reverse(fused.begin(), fused.end());
    grouped_.swap(fused);
}

// Whether a group may run as loops over arrays (run_arrays): an element
// kind whose every member's own computation is the same IEEE operations on
// numbers laid out as arrays (x ** k only for one k with k - 1 == 1, whose
// pow(x, 1) is x), its nodes consecutive, each operand's nodes consecutive
// the same way or reached through their ids, and no operand node twice among
// those the members add into (but a shared one, summed in order apart): so
// each gradient gets the same additions, in any order of the members.
void Schedule::set_arrays(Group& group) const {
    const Decoded* m = members_.data() + group.first;
    const size_t n = group.count;
    const uint8_t kind = group.kind;
    const bool binary = kind == kAddNN || kind == kMulNN;
    if (!binary && kind != kAddNK && kind != kMulNK && kind != kPow) return;
    int step = 0;
    auto never = [](size_t) { return false; };
    if (reach_of(n, [m](size_t t) { return m[t].node; }, never, &step) != Reach::kConsecutive)
        return;
    auto reach = [&](auto id) {
        int operand_step = 0;
        const Reach r = reach_of(n, id, [&](size_t t) { return id(t) == id(0); }, &operand_step);
        return r == Reach::kConsecutive && operand_step != step ? Reach::kIndexed : r;
    };
    group.step = static_cast<int8_t>(step);
    group.a = reach([m](size_t t) { return m[t].a; });
    if (binary) group.b = reach([m](size_t t) { return m[t].b; });
    if (kind == kMulNK) {
        const double k = term_constants_[m[0].b].value;
        bool same = true;
        for (size_t t = 1; t < n; ++t)
            same &= std::memcmp(&term_constants_[m[t].b].value, &k, sizeof k) == 0;
        group.b = same ? Reach::kSame : Reach::kIndexed;
    }
    if (kind == kPow) {  // one k throughout, k - 1 == 1
        const double k = pow_constants_[m[0].b].value;
        for (size_t t = 1; t < n; ++t)
            if (std::memcmp(&pow_constants_[m[t].b].value, &k, sizeof k) != 0) return;
        if (pow_constants_[m[0].b].minus_one != 1.0) return;
    }
    // the nodes the members add into, but a shared one: each once
    std::vector<NodeId> targets;
    for (size_t t = 0; t < n; ++t) {
        if (group.shared != 0) targets.push_back(m[t].a);
        if (binary && group.shared != 1) targets.push_back(m[t].b);
    }
    std::sort(targets.begin(), targets.end());
    if (std::adjacent_find(targets.begin(), targets.end()) != targets.end()) return;
    group.arrays = true;
}

// A group as loops over arrays, on the hardware (the pass with the NaN rule,
// which runs only after a NaN, takes the members one by one): the j-th of
// its nodes in ascending ids is member j (step 1) or n - 1 - j (step -1),
// and each member's additions are its own step's, so the same bits in
// another order of the members, which no gradient sees (set_arrays).  A
// shared operand's gradient is summed in the members' order, apart; an
// inline constant's is written in a loop of its own.
template <uint8_t kKind>
AGRAD_ALWAYS_INLINE void Schedule::run_arrays(Graph& graph, const Group& group, const Decoded* m,
                                              bool* nan_seen) const {
    using F = Arith<false>;
    using E = typename KindEntry<kKind>::type;
    double* grads = graph.grad_slots();
    const double* values = reinterpret_cast<const double*>(graph.value_slots());
    const size_t n = group.count;
    const bool up = group.step > 0;
    auto member = [m, n, up](size_t j) -> const Decoded& { return m[up ? j : n - 1 - j]; };
    const NodeId lowest = member(0).node;
    const double* g = grads + lowest;
    // an operand's gradient and value, as arrays or through the ids
    auto operand = [&](Reach r, auto id, auto f) AGRAD_ALWAYS_INLINE_LAMBDA {
        if (r == Reach::kConsecutive) {
            const NodeId first = id(member(0));
            return f([p = grads + first](size_t j) -> double& { return p[j]; },
                     [p = values + first](size_t j) { return p[j]; });
        }
        return f([grads, &member, id](size_t j) -> double& { return grads[id(member(j))]; },
                 [values, &member, id](size_t j) { return values[id(member(j))]; });
    };
    auto a_id = [](const Decoded& d) { return d.a; };
    auto b_id = [](const Decoded& d) { return d.b; };
    if constexpr (kKind == kAddNN || kKind == kMulNN) {
        if (group.shared >= 0) {  // the other operand's additions, then the shared sum in order
            const bool a_shared = group.shared == 0;
            const NodeId shared = a_shared ? m[0].a : m[0].b;
            const double shared_value = values[shared];
            auto other = [&](auto f) AGRAD_ALWAYS_INLINE_LAMBDA {
                if (a_shared) return operand(group.b, b_id, f);
                return operand(group.a, a_id, f);
            };
            other([&](auto other_grad, auto other_value) AGRAD_ALWAYS_INLINE_LAMBDA {
                for (size_t j = 0; j < n; ++j)
                    other_grad(j) = E::template chain<F>(other_grad(j), shared_value, g[j]);
                double sum = grads[shared];
                for (size_t t = 0; t < n; ++t) {
                    const size_t j = up ? t : n - 1 - t;
                    sum = E::template chain<F>(sum, other_value(j), g[j]);
                }
                grads[shared] = sum;
            });
            return;
        }
        operand(group.a, a_id, [&](auto a_grad, auto a_value) AGRAD_ALWAYS_INLINE_LAMBDA {
            operand(group.b, b_id, [&](auto b_grad, auto b_value) AGRAD_ALWAYS_INLINE_LAMBDA {
                for (size_t j = 0; j < n; ++j) {
                    a_grad(j) = E::template chain<F>(a_grad(j), b_value(j), g[j]);
                    b_grad(j) = E::template chain<F>(b_grad(j), a_value(j), g[j]);
                }
            });
        });
    } else if constexpr (kKind == kAddNK || kKind == kMulNK) {
        operand(group.a, a_id, [&](auto a_grad, auto a_value) AGRAD_ALWAYS_INLINE_LAMBDA {
            if constexpr (kKind == kAddNK) {  // (the constant is no derivative of a sum)
                for (size_t j = 0; j < n; ++j)
                    a_grad(j) = E::template chain<F>(a_grad(j), 0.0, g[j]);
            } else if (group.b == Reach::kSame) {  // one constant throughout
                const double k = term_constants_[m[0].b].value;
                for (size_t j = 0; j < n; ++j) a_grad(j) = E::template chain<F>(a_grad(j), k, g[j]);
            } else {
                for (size_t j = 0; j < n; ++j)
                    a_grad(j) = E::template chain<F>(a_grad(j), term_constants_[member(j).b].value,
                                                     g[j]);
            }
            for (size_t j = 0; j < n; ++j)
                write_constant_grad<false>(graph.constant_grad(member(j).node),
                                           E::template chain<F>(0.0, a_value(j), g[j]), nan_seen);
        });
    } else {  // kPow, one k with pow(x, k - 1) == x
        operand(group.a, a_id, [&](auto a_grad, auto a_value) AGRAD_ALWAYS_INLINE_LAMBDA {
            const double k = pow_constants_[m[0].b].value;
            for (size_t j = 0; j < n; ++j)
                a_grad(j) = F::add_mul(a_grad(j), ops::Pow::derivative<F>(k, a_value(j)), g[j]);
        });
    }
}

// One step, or a group's steps in a loop, each with its kind known at
// compile time, so that run_decoded's switch is folded away.
template <bool kFloats, bool kRule>
AGRAD_ALWAYS_INLINE Status Schedule::run_step(Graph& graph, const Decoded& step,
                                              const NodeId* operands, double* powers,
                                              bool* nan_seen) {
    if (step.kind != kGroup)
        return run_decoded<kFloats, kRule>(graph, step, operands, powers, nan_seen);
    const Group& group = groups_[step.a];
    const Decoded* members = members_.data() + group.first;
    if (kFloats && !kRule && group.arrays) {
        switch (group.kind) {
#define X(code)                                            \
    case code:                                             \
        run_arrays<code>(graph, group, members, nan_seen); \
        return Status::Ok;
            X(kAddNN) X(kAddNK) X(kMulNN) X(kMulNK) X(kPow)
#undef X
        }
    }
    if (group.shared >= 0) return run_shared<kFloats, kRule>(graph, group, members);
    switch (group.kind) {
#define X(code)                                                                                \
    case code:                                                                                 \
        for (uint32_t t = 0; t < group.count; ++t) {                                           \
            Decoded member = members[t];                                                       \
            member.kind = code;                                                                \
            Status s = run_decoded<kFloats, kRule>(graph, member, operands, powers, nan_seen); \
            if (s != Status::Ok) return s;                                                     \
        }                                                                                      \
        return Status::Ok;
        AGRAD_GROUPABLE_KINDS(X)
#undef X
        default:
            return Status::Ok;  // (group_independent makes groups of groupable kinds only)
    }
}
#undef AGRAD_GROUPABLE_KINDS
#undef AGRAD_UNARY_KIND

// Whether every node the schedule reaches holds a float: checked once, then
// taken on trust for as long as no int is written anywhere.
bool Schedule::reads_floats_only(const Graph& graph) {
    if (floats_since_ == graph.int_writes()) return true;
    const uint8_t* ints = graph.int_marks();
    for (size_t i = 0; i < spans_.size(); i += 2)
        for (NodeId id = spans_[i]; id < spans_[i + 1]; ++id)
            if (ints[id]) return false;
    floats_since_ = graph.int_writes();
    return true;
}

// The gradients a kept schedule's pass starts from: every reached node's 0.
// An inline constant's (the -1 of each of the chapter's 1000 `-y`) needs no
// zero: a complete pass assigns it its one contribution (set_constant_grad),
// as a failing pass zeroes every gradient, constants' included.
void Schedule::zero(Graph& graph) const {
    double* grads = graph.grad_slots();
    for (size_t i = 0; i < spans_.size(); i += 2)
        std::fill(grads + spans_[i], grads + spans_[i + 1], 0.0);
}

// (one loop for each kind of pass, chosen once, not a test a step)
template <bool kRule>
Status Schedule::pass(Graph& graph, NodeId root, bool floats, bool* constant_nan,
                      const std::vector<Decoded>& steps) {
    return floats ? pass_of<kRule, true>(graph, root, constant_nan, steps)
                  : pass_of<kRule, false>(graph, root, constant_nan, steps);
}

template <bool kRule, bool kFloats>
Status Schedule::pass_of(Graph& graph, NodeId root, bool* constant_nan,
                         const std::vector<Decoded>& steps) {
    graph.grad_slots()[root] = 1.0;
    const NodeId* operands = operands_.data();
    double* powers = powers_.data();
    // kept in a register, not stored at every constant's gradient (the
    // chapter's y - yhat writes one a sample)
    bool nan_seen = false;
    for (size_t i = steps.size(); i-- > 0;) {
        Status s = run_step<kFloats, kRule>(graph, steps[i], operands, powers, &nan_seen);
        if (s != Status::Ok) {  // every gradient is left at 0, as Graph's own pass leaves them
            for (size_t j = 0; j < spans_.size(); j += 2)
                for (NodeId id = spans_[j]; id < spans_[j + 1]; ++id) graph.zero_gradients(id);
            return s;
        }
    }
    *constant_nan = nan_seen;
    return Status::Ok;
}

// On the hardware first, then with the NaN rule only if a sink's gradient or
// a constant's came out a NaN: Graph::backward's two passes, and why they
// are exact (graph.cpp).
Status Schedule::run(Graph& graph, NodeId root) {
    if (shape_ != graph.shape())
        make(graph, root);  // zeroes the gradients as it goes
    else
        zero(graph);
    const bool floats = reads_floats_only(graph);
    const bool grouped = !grouped_.empty();
    const std::vector<Decoded>& steps = grouped ? grouped_ : steps_;
    bool nan = false;  // a pass on the hardware alone wrote a NaN into a constant's gradient
    Status s = pass<false>(graph, root, floats, &nan, steps);
    if (s != Status::Ok && grouped) {  // backward()'s own order finds its first error
        zero(graph);
        s = pass<false>(graph, root, floats, &nan, steps_);
    }
    if (s != Status::Ok) return s;
    const double* grads = graph.grad_slots();
    for (size_t i = 0; i < sink_spans_.size(); i += 2)
        for (NodeId id = sink_spans_[i]; id < sink_spans_[i + 1]; ++id)
            nan |= grads[id] != grads[id];
    if (!nan) return Status::Ok;
    zero(graph);
    return pass<true>(graph, root, floats, &nan, steps);
}

Program::Program(Graph& graph, std::vector<NodeId> log, const std::vector<NodeId>& outputs,
                 std::vector<NodeId> inputs)
    : graph_(graph), log_(std::move(log)), inputs_(std::move(inputs)) {
    for (NodeId id : log_)
        if (graph_.op(id) != Op::Leaf) steps_.push_back(id);
    std::vector<NodeId> made(log_);
    std::sort(made.begin(), made.end());
    for (NodeId id : outputs)
        if (std::binary_search(made.begin(), made.end(), id) && !graph_.keeps_schedule(id)) {
            graph_.keep_schedule(id);
            scheduled_.push_back(id);
        }
}

// The program's nodes take their ids in the order a replay writes them, so
// that a group's nodes (the chapter's 1000 products, its 1000 sums, ...)
// hold consecutive ids, their values and gradients consecutive slots, and a
// group whose operands are another group's nodes, member for member, reads
// them consecutively too: one loop over arrays (Replay::run).  The ids are
// the program's own, permuted among the nodes that may move: those made by
// an operation that nothing outside the program refers to (no Python
// object, no kept schedule, no guard, no node made outside the recording:
// every reference a node holds is the log's or a parent's in the log).
// Nothing computed depends on an id, only on the graph's edges, so every
// value, gradient and order of additions stays as it was.  Done once, at
// the first replay that decodes (replay_ is built): true if a node moved.
// The inputs move too, to consecutive ids in their own order ahead of the
// rest (the chapter's xs, then its ys, which its groups read member for
// member), as do the arguments' numbers with them (inputs_).
bool Program::lay_out() {
    std::vector<size_t> ends;
    const std::vector<NodeId> order = replay_.written(&ends);
    if (order.empty()) return false;  // not decoded: nothing to lay out for
    laid_out_ = true;
    std::vector<NodeId> made(log_);
    std::sort(made.begin(), made.end());
    // references from the log's nodes, by id over the log's range
    const NodeId first = made.front();
    std::vector<uint32_t> parents(made.back() - first + 1, 0);
    for (NodeId id : log_) {
        const size_t count = graph_.child_count(id);
        for (size_t i = 0; i < count; ++i) {
            const NodeId c = graph_.child(id, i);
            if (!Graph::is_constant(c) && c >= first && c - first < parents.size())
                ++parents[c - first];
        }
    }
    std::vector<NodeId> inputs(inputs_);
    std::sort(inputs.begin(), inputs.end());
    auto movable = [&](NodeId id) {
        const bool input = std::binary_search(inputs.begin(), inputs.end(), id);
        return (graph_.op(id) != Op::Leaf || input) && graph_.owner(id) == nullptr &&
               !graph_.keeps_schedule(id) && graph_.references(id) == 1 + parents[id - first];
    };
    // the nodes to move, in blocks to keep consecutive: the inputs, then
    // order's blocks (a group's nodes each)
    std::vector<NodeId> from;
    std::vector<std::pair<size_t, size_t>> blocks;  // [begin, end) of from
    auto block = [&](auto begin, auto end) {
        const size_t start = from.size();
        for (auto at = begin; at != end; ++at)
            if (movable(*at)) from.push_back(*at);
        if (from.size() > start) blocks.emplace_back(start, from.size());
    };
    block(inputs_.begin(), inputs_.end());
    for (size_t b = 0, begin = 0; b < ends.size(); begin = ends[b++])
        block(order.begin() + begin, order.begin() + ends[b]);
    // The ids they take, the same set (the movable nodes' ids): a recording's
    // ids have gaps where nodes older than it live, so each block, largest
    // first, takes the shortest run of consecutive ids that holds it whole,
    // or else the rest of the longest runs.
    std::multimap<size_t, NodeId> runs;  // length -> first id
    for (size_t i = 0; i < made.size();) {
        if (!movable(made[i])) {
            ++i;
            continue;
        }
        size_t j = i + 1;
        while (j < made.size() && made[j] == made[j - 1] + 1 && movable(made[j])) ++j;
        runs.emplace(j - i, made[i]);
        i = j;
    }
    std::stable_sort(blocks.begin(), blocks.end(), [](const auto& x, const auto& y) {
        return x.second - x.first > y.second - y.first;
    });
    std::vector<NodeId> to(from.size());
    bool whole = true;  // every block in one run
    for (auto [begin, end] : blocks) {
        while (begin < end) {
            auto run = runs.lower_bound(end - begin);
            if (run == runs.end()) {  // the longest, taken whole
                run = std::prev(runs.end());
                whole = false;
            }
            const size_t length = run->first, taken = std::min(length, end - begin);
            const NodeId start = run->second;
            runs.erase(run);
            for (size_t k = 0; k < taken; ++k) to[begin + k] = start + static_cast<NodeId>(k);
            if (taken < length) runs.emplace(length - taken, start + static_cast<NodeId>(taken));
            begin += taken;
        }
    }
    // Ids too scattered to hold the blocks whole (the arena was fragmented
    // when the recording took them): the nodes go to a span of free ids
    // instead, and their ids are freed.
    if (!whole) {
        const NodeId span = graph_.free_span(from.size());
        if (span != Graph::kNoNode)
            for (size_t k = 0; k < from.size(); ++k) to[k] = span + static_cast<NodeId>(k);
    }
    if (from == to) return false;  // already in place
    const Graph::Moves moves(std::move(from), std::move(to));
    graph_.relocate(moves, log_);
    for (std::vector<NodeId>* ids : {&log_, &steps_, &inputs_})
        for (NodeId& id : *ids) id = moves(id);
    return true;
}

Program::~Program() {
    for (NodeId id : scheduled_) graph_.forget_schedule(id);
    for (NodeId id : log_) graph_.release(id);
}

Status Program::forward() {
    if (!replay_.built_for(graph_)) {
        replay_.build(graph_, steps_);
        if (!laid_out_ && lay_out()) replay_.build(graph_, steps_);  // by the new ids
    }
    if (replay_.run(graph_)) return Status::Ok;
    for (NodeId id : steps_) {
        const Status s = graph_.recompute(id);
        if (s != Status::Ok) return s;
    }
    return Status::Ok;
}

}  // namespace agrad
