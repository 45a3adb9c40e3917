#include "agrad/replay.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>
#include <type_traits>

namespace agrad {

void Replay::build(const Graph& graph, const std::vector<NodeId>& steps) {
    code_.clear();
    groups_.clear();
    members_.clear();
    bundles_.clear();
    bundled_.clear();
    chain_lanes_.clear();
    constants_.clear();
    operands_.clear();
    reads_.clear();
    built_ = true;
    shape_ = graph.shape();
    floats_only_ = false;
    floats_since_ = kNever;
    marks_clear_since_ = kNever;

    // each id: made by the program, or read by it (once in reads_), or neither
    enum : uint8_t { kNeither, kMade, kRead };
    std::vector<uint8_t> seen(graph.id_limit(), kNeither);
    for (NodeId id : steps) seen[id] = kMade;
    auto read = [&](NodeId id) {
        if (seen[id] == kNeither) {
            seen[id] = kRead;
            reads_.push_back(id);
        }
        return id;
    };
    auto constant = [&](Number k) {
        constants_.push_back(k.as_double());
        return static_cast<NodeId>(constants_.size() - 1);
    };
    auto emit = [&](uint8_t code, NodeId out, NodeId a, NodeId b) {
        code_.push_back({code, out, a, b});
    };
    // Terms whose operands are all nodes go into runs: such terms in a row
    // are one kSumRun or kDotRun over operands_.
    auto term = [&](Code run, NodeId out, NodeId a, NodeId b) {
        if (code_.back().code != run)
            code_.push_back({run, out, static_cast<NodeId>(operands_.size()), 0});
        operands_.push_back(a);
        if (run == kDotRun) operands_.push_back(b);
        ++code_.back().b;
    };
    for (NodeId id : steps) {
        const NodeKind kind = graph.node_kind(id);
        switch (kind) {
            case kAddNN:
            case kMulNN:
                emit(kind, id, read(graph.child(id, 0)), read(graph.child(id, 1)));
                continue;
            case kAddNK:
            case kMulNK:
            case kPow:
                emit(kind, id, read(graph.child(id, 0)), constant(graph.param(id)));
                continue;
            case kNodeKinds:
                break;  // a sum, a dot, or no operation: below
            default:    // exp, log, tanh, relu, sigmoid
                emit(kind, id, read(graph.child(id, 0)), 0);
                continue;
        }
        const Op op = graph.op(id);
        switch (op) {
            case Op::Sum:
            case Op::Dot: {
                const size_t stride = op == Op::Sum ? 1 : 2;
                const size_t count = graph.child_count(id);
                auto entry = [&](size_t i) { return graph.child(id, i); };
                auto value = [&](size_t i) { return graph.child_value(id, i); };
                // The terms of constants only that come first are added here, by
                // the engine's own rules, while the total may still be an int;
                // from the first term with a node on, the total is a float.
                Number total = op == Op::Sum ? graph.param(id) : Number::of_int(0);
                size_t i = 0;
                // (before the first term with a Value, which adds as v + total:
                // ChildList)
                for (; i < count; i += stride) {
                    if (op == Op::Sum) {
                        if (!Graph::is_constant(entry(i))) break;
                        if (add(total, value(i), &total) != Status::Ok) return;
                    } else {
                        if (!Graph::is_constant(entry(i)) || !Graph::is_constant(entry(i + 1)))
                            break;
                        Number product;
                        if (mul(value(i), value(i + 1), &product) != Status::Ok ||
                            add(total, product, &total) != Status::Ok)
                            return;
                    }
                }
                if (i >= count) return;  // constants only: the total may be an int
                // The first term with a Value is added as v + total, the others
                // as total + v, which only differ when both are NaN.  So with a
                // NaN total (or a materialized constant before that term, which
                // then reads as a node) the program goes through recompute.
                if (i != graph.first_node_term(id) || std::isnan(total.as_double())) return;
                emit(kStart, id, 0, constant(total));
                for (; i < count; i += stride) {
                    const NodeId e = entry(i);
                    if (op == Op::Sum) {
                        if (Graph::is_constant(e))
                            emit(kAddConst, id, 0, constant(value(i)));
                        else
                            term(kSumRun, id, read(e), 0);
                        continue;
                    }
                    const NodeId x = entry(i + 1);
                    const bool kw = Graph::is_constant(e), kx = Graph::is_constant(x);
                    if (kw && kx) {
                        // a float product now (the total is a float): fold it
                        Number product;
                        if (mul(value(i), value(i + 1), &product) != Status::Ok) return;
                        emit(kAddConst, id, 0, constant(product));
                    } else if (kw) {  // x.__rmul__(w): x * w
                        emit(kDotKN, id, constant(value(i)), read(x));
                    } else if (kx) {
                        emit(kDotNK, id, read(e), constant(value(i + 1)));
                    } else if (graph.input_first(id, i / 2)) {  // w was a materialized constant
                        term(kDotRun, id, read(x), read(e));
                    } else {
                        term(kDotRun, id, read(e), read(x));
                    }
                }
                emit(kEnd, id, 0, 0);
                break;
            }
            default:
                return;  // a leaf or a custom node is not an operation to replay
        }
    }
    share_identical();
    fuse_chains();
    fuse_sums();
    group_independent(graph.id_limit());
    floats_only_ = true;
}

// The nodes an instruction reads, and those it writes, as its code lays them
// out (replay.hpp): what ordering it by depth must respect.
template <class F>
void Replay::for_each_read(const Instruction& in, F&& f) const {
    const NodeId* ids = operands_.data() + in.a;
    switch (in.code) {
        case kAddNN:
        case kMulNN:
            f(in.a);
            f(in.b);
            return;
        case kDotKN:
            f(in.b);
            return;
        case kSumRun:
            for (NodeId t = 0; t < in.b; ++t) f(ids[t]);
            return;
        case kDotRun:
            for (NodeId t = 0; t < 2 * in.b; ++t) f(ids[t]);
            return;
        case kChain:  // its start, each link's w and x
            f(in.out);
            for (NodeId l = 0; l < in.b; ++l) f(ids[4 * l]), f(ids[4 * l + 1]);
            return;
        case kSumChain:  // its start, each link's term
            f(in.out);
            for (NodeId l = 0; l < in.b; ++l) f(ids[2 * l]);
            return;
        case kStart:
        case kAddConst:
        case kEnd:
            return;
        default:  // one operand: x op k, exp(x), ..., kDotNK's, kCopy's
            f(in.a);
            return;
    }
}

template <class F>
void Replay::for_each_write(const Instruction& in, F&& f) const {
    const NodeId* ids = operands_.data() + in.a;
    switch (in.code) {
        case kChain:  // each link's m and s
            for (NodeId l = 0; l < in.b; ++l) f(ids[4 * l + 2]), f(ids[4 * l + 3] & ~kTermFirst);
            return;
        case kSumChain:  // each link's s
            for (NodeId l = 0; l < in.b; ++l) f(ids[2 * l + 1] & ~kTermFirst);
            return;
        case kStart:
        case kAddConst:
        case kDotNK:
        case kDotKN:
        case kSumRun:
        case kDotRun:
        case kDotBlock:
            return;  // a running total's parts: its node is written by kEnd
        default:     // a node's own operation, kCopy, kEnd
            f(in.out);
            return;
    }
}

std::vector<NodeId> Replay::written(std::vector<size_t>* ends) const {
    std::vector<NodeId> order;
    ends->clear();
    if (!floats_only_) return order;
    auto end_block = [&] {
        if (order.size() > (ends->empty() ? 0 : ends->back())) ends->push_back(order.size());
    };
    for (const Instruction& in : code_) {
        if (in.code == kChainBundle) {  // lane by lane, as each chain alone
            for (uint32_t m = 0; m < kLanes; ++m)
                for_each_write(chain_lanes_[in.out + m],
                               [&order](NodeId id) { order.push_back(id); });
            continue;
        }
        if (in.code == kBundle) {
            const Bundle& bundle = bundles_[in.out];
            for (uint32_t i = 0; i < bundle.length * kLanes; ++i)
                for_each_write(bundled_[bundle.first + i],
                               [&order](NodeId id) { order.push_back(id); });
            continue;
        }
        if (in.code != kGroup) {
            for_each_write(in, [&order](NodeId id) { order.push_back(id); });
            continue;
        }
        end_block();
        const Group& group = groups_[in.out];
        for (uint32_t t = 0; t < group.count; ++t) order.push_back(members_[group.first + t].out);
        end_block();
    }
    end_block();
    return order;
}

// Nodes that read nothing of each other can be computed in any order: each
// is written once, from operands already written, by the same IEEE
// operation, so its bits do not depend on when.  So the instructions are
// taken by depth (1 + the deepest node they read that the program makes),
// and the nodes of one operation at one depth (the chapter's 1000 products
// w * x, then its 1000 sums, ...; an MLP's activations across neurons and
// samples) become one group, run as one loop: no switch and no mispredicted
// jump a node.  A running total's instructions (kStart to kEnd) move as one,
// and so does a chain of links (kChain, fused first: a neuron's links in a
// row with the total in a register cost less than a group a link, which
// sweeps the whole batch's nodes once per link).  Depths only order nodes
// that do not depend on each other, and an operation that fails makes the
// replay decline, whatever the order (recompute then fails where eager code
// does).
void Replay::group_independent(size_t id_limit) {
    constexpr size_t kMinGroup = 4;  // fewer are left as instructions
    struct Item {
        uint32_t depth, begin, end;  // code_[begin, end)
    };
    std::vector<uint32_t> depth_of(id_limit, 0);  // 0: not made by the program
    std::vector<Item> items;
    items.reserve(code_.size());
    for (size_t i = 0; i < code_.size();) {
        size_t end = i + 1;
        if (code_[i].code == kStart)
            while (code_[end - 1].code != kEnd) ++end;
        uint32_t deepest = 0;
        for (size_t j = i; j < end; ++j)
            for_each_read(code_[j], [&](NodeId id) { deepest = std::max(deepest, depth_of[id]); });
        for (size_t j = i; j < end; ++j)
            for_each_write(code_[j], [&](NodeId id) { depth_of[id] = deepest + 1; });
        items.push_back({deepest + 1, static_cast<uint32_t>(i), static_cast<uint32_t>(end)});
        i = end;
    }
    {  // by depth, in order within a depth: a counting sort (depths run 1..items)
        std::vector<uint32_t> start(items.size() + 2, 0);
        for (const Item& item : items) ++start[item.depth + 1];
        for (size_t d = 1; d < start.size(); ++d) start[d] += start[d - 1];
        std::vector<Item> sorted(items.size());
        for (const Item& item : items) sorted[start[item.depth]++] = item;
        items.swap(sorted);
    }

    std::vector<Instruction> grouped;
    grouped.reserve(code_.size());
    std::vector<std::vector<const Item*>> by_code(256);
    std::vector<uint8_t> codes;  // at this depth, in order of first appearance
    std::vector<std::pair<uint32_t, uint32_t>> totals;  // at this depth: sums' and dots' code
    std::vector<uint32_t> chains;  // at this depth: micrograd's chains (kChain)
    for (size_t i = 0; i < items.size();) {
        size_t j = i;
        for (; j < items.size() && items[j].depth == items[i].depth; ++j) {
            const Item& item = items[j];
            const uint8_t code = code_[item.begin].code;
            if (code == kStart) {
                totals.push_back({item.begin, item.end});
                continue;
            }
            if (code == kChain) {
                chains.push_back(item.begin);
                continue;
            }
            if (code == kSumChain) {
                grouped.insert(grouped.end(), code_.begin() + item.begin, code_.begin() + item.end);
                continue;
            }
            if (by_code[code].empty()) codes.push_back(code);
            by_code[code].push_back(&item);
        }
        for (uint8_t code : codes) {
            std::vector<const Item*>& same = by_code[code];
            if (same.size() < kMinGroup) {
                for (const Item* item : same) grouped.push_back(code_[item->begin]);
            } else {
                grouped.push_back({kGroup, static_cast<NodeId>(groups_.size()), 0, 0});
                groups_.push_back({code, static_cast<uint32_t>(members_.size()),
                                   static_cast<uint32_t>(same.size())});
                for (const Item* item : same) {
                    const Instruction& in = code_[item->begin];
                    members_.push_back({in.out, in.a, in.b});
                }
                set_reach(groups_.back());
            }
            same.clear();
        }
        codes.clear();
        bundle_totals(totals, &grouped);
        totals.clear();
        bundle_chains(chains, &grouped);
        chains.clear();
        i = j;
    }
    code_.swap(grouped);
}

// Whether a chain's links read their x's from a block of consecutive ids,
// ascending, and write their m's and s's into one, m, s, m, s, ...
// (micrograd's neuron once Program::lay_out has placed it: the layer below
// laid out side by side, its own nodes in the order it writes them): 0 if
// not, else kBlocks, or kWeightBlock if its w's are one too (the
// parameters stay where the user made them: one after another in a fresh
// arena, scattered over the holes of a used one, and then read through
// their ids).
uint8_t Replay::array_chain(const Instruction& chain) const {
    const NodeId* links = operands_.data() + chain.a;
    const NodeId own = links[2];
    if (!is_block(links + 1, chain.b, 4, links[1], 1) || !is_block(links + 2, chain.b, 4, own, 2))
        return 0;
    for (NodeId l = 0; l < chain.b; ++l)  // each s (flagged when written term first)
        if ((links[4 * l + 3] & ~kTermFirst) != own + 2 * l + 1) return 0;
    return is_block(links, chain.b, 4, links[0], 1) ? kWeightBlock : kBlocks;
}

// The chains of one depth (an MLP layer's neurons of micrograd's code,
// across samples), those of one length kLanes at a time as one
// kChainBundle, run in lockstep: each chain's additions wait for each other
// (exactness fixes their order), about 3 cycles a link, and kLanes chains
// side by side keep the adder busy.  Those of each length over blocks
// (array_chain) are bundled apart from the others, to read their numbers
// as arrays.  The rest stay kChains.
void Replay::bundle_chains(const std::vector<uint32_t>& chains, std::vector<Instruction>* out) {
    // (blocks, links, chain), stable within each kind
    std::vector<std::tuple<uint8_t, NodeId, uint32_t>> kinds;
    for (uint32_t c : chains) kinds.push_back({array_chain(code_[c]), code_[c].b, c});
    std::stable_sort(kinds.begin(), kinds.end(), [](const auto& p, const auto& q) {
        return std::tie(std::get<0>(p), std::get<1>(p)) < std::tie(std::get<0>(q), std::get<1>(q));
    });
    size_t i = 0;
    while (i < kinds.size()) {
        size_t j = i;
        while (j < kinds.size() && std::get<0>(kinds[j]) == std::get<0>(kinds[i]) &&
               std::get<1>(kinds[j]) == std::get<1>(kinds[i]))
            ++j;
        for (; i + kLanes <= j; i += kLanes) {
            const auto [blocks, links, chain] = kinds[i];
            out->push_back({kChainBundle, static_cast<NodeId>(chain_lanes_.size()), blocks, links});
            for (uint32_t m = 0; m < kLanes; ++m)
                chain_lanes_.push_back(code_[std::get<2>(kinds[i + m])]);
        }
        for (; i < j; ++i) out->push_back(code_[std::get<2>(kinds[i])]);
    }
}

// The running totals of one depth (sums, dots: code_[begin, end) each),
// those of one shape (the same codes, runs of the same lengths: an MLP's
// neurons of one layer, each a dot of as many terms) kLanes at a time as one
// kBundle, run in lockstep: each total is a chain of dependent additions
// (exactness fixes their order), about 4 cycles a term, and kLanes chains
// side by side keep the adder busy.  Each total gets the same operations in
// the same order as alone.  The rest stay as they were.
void Replay::bundle_totals(const std::vector<std::pair<uint32_t, uint32_t>>& totals,
                           std::vector<Instruction>* out) {
    auto shape = [this](std::pair<uint32_t, uint32_t> t) {
        std::vector<uint32_t> key;
        for (uint32_t i = t.first; i < t.second; ++i) {
            const Instruction& in = code_[i];
            key.push_back(in.code);
            if (in.code == kSumRun || in.code == kDotRun) key.push_back(in.b);
        }
        return key;
    };
    std::vector<std::pair<std::vector<uint32_t>, std::vector<size_t>>> shapes;
    for (size_t i = 0; i < totals.size(); ++i) {
        std::vector<uint32_t> key = shape(totals[i]);
        auto same = std::find_if(shapes.begin(), shapes.end(),
                                 [&key](const auto& s) { return s.first == key; });
        if (same == shapes.end())
            shapes.push_back({std::move(key), {i}});
        else
            same->second.push_back(i);
    }
    for (const auto& [key, members] : shapes) {
        size_t m = 0;
        for (; m + kLanes <= members.size(); m += kLanes) {
            const auto [begin, end] = totals[members[m]];
            const uint32_t length = end - begin;
            out->push_back({kBundle, static_cast<NodeId>(bundles_.size()), 0, 0});
            bundles_.push_back({static_cast<uint32_t>(bundled_.size()), length});
            for (uint32_t p = 0; p < length; ++p) {
                const size_t at = bundled_.size();
                for (uint32_t lane = 0; lane < kLanes; ++lane)
                    bundled_.push_back(code_[totals[members[m + lane]].first + p]);
                if (bundled_[at].code == kDotRun) as_block(bundled_.data() + at);
            }
        }
        for (; m < members.size(); ++m) {
            const auto [begin, end] = totals[members[m]];
            out->insert(out->end(), code_.begin() + begin, code_.begin() + end);
        }
    }
}

// A node's own operation (not a chain's link, not a running total) that
// repeats an earlier instruction, the same code on the same operand nodes in
// the same order, with the same constant bit for bit (a NaN's payload, -0.0
// against 0.0), becomes a copy of that instruction's node.  Operands are
// compared as node ids, not values: two nodes holding equal numbers now may
// not at the next replay.  Each node is written once in a replay, before any
// read of it, so the earlier node holds its value by the time it is copied;
// and an operation that fails makes the replay decline at its first
// occurrence, before any copy of it.  Only floats reach here, so the
// constant's double is the whole operation: `x ** 2` and `x ** 2.0` compute
// alike.  a + b and b + a are not the same: with two NaNs the left one wins.
void Replay::share_identical() {
    struct Key {
        uint64_t b;  // the second operand's node id, or the constant's bits
        NodeId a;
        uint8_t code;
        bool operator==(const Key& o) const { return b == o.b && a == o.a && code == o.code; }
    };
    // an open-addressing table, twice the instructions at least: one
    // allocation, where a node-based map made one an instruction
    struct Entry {
        Key key;
        NodeId out;
        bool used;
    };
    size_t capacity = 16;
    while (capacity < 2 * code_.size()) capacity *= 2;
    std::vector<Entry> table(capacity);
    auto slot = [&table, capacity](const Key& k) {
        uint64_t h = k.b ^ (uint64_t{k.a} << 8 | k.code) * 0x9E3779B97F4A7C15ull;
        h = (h ^ (h >> 31)) * 0xBF58476D1CE4E5B9ull;  // (splitmix64's finish)
        size_t i = static_cast<size_t>(h ^ (h >> 29)) & (capacity - 1);
        while (table[i].used && !(table[i].key == k)) i = (i + 1) & (capacity - 1);
        return &table[i];
    };
    for (Instruction& in : code_) {
        Key key{0, in.a, in.code};
        switch (in.code) {
            case kAddNN:
            case kMulNN:
                key.b = in.b;
                break;
            case kAddNK:
            case kMulNK:
            case kPow:
                std::memcpy(&key.b, &constants_[in.b], sizeof key.b);
                break;
            default:
                if (in.code >= kNodeKinds) continue;  // a sum's, a dot's or a chain's part
                break;                                // exp, log, ...: one operand
        }
        Entry* e = slot(key);
        if (!e->used)
            *e = {key, in.out, true};
        else
            in = {kCopy, in.out, e->out, 0};
    }
}

// micrograd's neuron, sum((w * x for ...), b), is a chain: a product, then
// the running total plus it, again and again.  Each link costs an addition
// whose operand was just stored and is loaded back; as one kChain the total
// stays in a register (every node is still written, in the same order).
void Replay::fuse_chains() {
    // Is code_[i], code_[i + 1] a link: m = w * x, then s = t + m (or m + t)?
    auto link = [this](size_t i, NodeId* t, bool* product_first) {
        if (i + 1 >= code_.size()) return false;
        const Instruction& mul = code_[i];
        const Instruction& add = code_[i + 1];
        if (mul.code != kMulNN || add.code != kAddNN || add.a == add.b) return false;
        *product_first = add.a == mul.out;
        *t = *product_first ? add.b : add.a;
        return add.a == mul.out || add.b == mul.out;
    };
    std::vector<Instruction> fused;
    fused.reserve(code_.size());
    for (size_t i = 0; i < code_.size();) {
        NodeId t;
        bool product_first;
        if (!link(i, &t, &product_first)) {
            fused.push_back(code_[i++]);
            continue;
        }
        Instruction chain{kChain, t, static_cast<NodeId>(operands_.size()), 0};
        NodeId total;
        do {
            const Instruction& mul = code_[i];
            total = code_[i + 1].out;
            operands_.insert(operands_.end(),
                             {mul.a, mul.b, mul.out, total | (product_first ? kTermFirst : 0)});
            ++chain.b;
            i += 2;
        } while (link(i, &t, &product_first) && t == total);
        if (chain.b == 1) {  // one link, w * x + b, gains nothing: its two may join groups
            operands_.resize(operands_.size() - 4);
            fused.insert(fused.end(), {code_[i - 2], code_[i - 1]});
            continue;
        }
        fused.push_back(chain);
    }
    code_.swap(fused);
}

// The builtin sum's s = s' + t, again and again (the chapter's loss): each
// addition's operand was just stored and is loaded back; as one kSumChain
// the total stays in a register, every node still written in order.  A
// chain starts after an instruction whose node the next addition reads.
void Replay::fuse_sums() {
    // Does code_[i], an addition, read node `total` as one operand (its term the other)?
    auto link = [this](size_t i, NodeId total, NodeId* term, bool* term_first) {
        if (i >= code_.size()) return false;
        const Instruction& add = code_[i];
        if (add.code != kAddNN || add.a == add.b || (add.a != total && add.b != total))
            return false;
        *term_first = add.b == total;
        *term = *term_first ? add.a : add.b;
        return true;
    };
    std::vector<Instruction> fused;
    fused.reserve(code_.size());
    for (size_t i = 0; i < code_.size();) {
        fused.push_back(code_[i]);
        const NodeId start = code_[i++].out;
        NodeId term;
        bool term_first;
        size_t end = i;
        for (NodeId total = start; link(end, total, &term, &term_first); ++end)
            total = code_[end].out;
        if (end - i < 2) continue;  // one link gains nothing
        Instruction chain{kSumChain, start, static_cast<NodeId>(operands_.size()), 0};
        for (NodeId total = start; i < end; ++i, ++chain.b) {
            link(i, total, &term, &term_first);
            total = code_[i].out;
            operands_.insert(operands_.end(), {term, total | (term_first ? kTermFirst : 0)});
        }
        fused.push_back(chain);
    }
    code_.swap(fused);
}

// What a replay reads and writes: the arena's value slots and int marks,
// and the program's constants.
struct Replay::Slots {
    Graph::Slot* values;
    uint8_t* ints;
    const double* k;   // the constants
    bool marks_clear;  // every node the program writes holds a float since its last run
    double v(NodeId id) const { return values[id].f; }
    // n nodes from `first` hold floats (their int marks, unless still clear)
    void clear_marks(NodeId first, size_t n) const {
        if (!marks_clear) std::memset(ints + first, 0, n);
    }
    void set(NodeId id, double r) const {
        values[id].f = r;
        ints[id] = 0;
    }
};

// One node of an element operation (a NodeKind or kCopy), the same for an
// instruction and for a group's loop: false when it fails.
template <uint8_t kCode>
AGRAD_ALWAYS_INLINE bool Replay::compute(Slots s, NodeId out, NodeId a, NodeId b) {
    double r;
    // the table's entry (ops.hpp), known here at compile time; + and * with the NaN rule
    if constexpr (kCode == kAddNN || kCode == kMulNN) {
        r = KindEntry<kCode>::type::template value<Arith<true>>(s.v(a), s.v(b));
    } else if constexpr (kCode == kAddNK || kCode == kMulNK) {
        r = KindEntry<kCode>::type::template value<Arith<true>>(s.v(a), s.k[b]);
    } else if constexpr (kCode == kPow) {
        if (ops::Pow::value(s.v(a), s.k[b], &r) != Status::Ok) return false;
    } else if constexpr (kCode == kCopy) {
        r = s.v(a);
    } else {
        if (KindEntry<kCode>::type::value(s.v(a), &r) != Status::Ok) return false;
    }
    s.set(out, r);
    return true;
}

// `pass(F)` computes a running total with F's + and * (Arith, number.hpp):
// on the hardware, then again with the NaN rule when the total came out a
// NaN.  The total.
template <class Pass>
AGRAD_ALWAYS_INLINE double with_nan_rule(Pass pass) {
    const double total = pass(Arith<false>{});
    return total == total ? total : pass(Arith<true>{});
}

void Replay::set_reach(Group& group) const {
    const Member* m = members_.data() + group.first;
    auto reach = [&](auto id, bool constant) {
        int step = 0;
        const Reach r = reach_of(
            group.count, [&](size_t t) { return id(m[t]); },
            [&](size_t t) {
                return constant ? std::memcmp(&constants_[id(m[t])], &constants_[id(m[0])],
                                              sizeof(double)) == 0
                                : id(m[t]) == id(m[0]);
            },
            &step);
        return r == Reach::kConsecutive && step != 1 ? Reach::kIndexed : r;
    };
    const uint8_t c = group.code;
    const bool b_constant = c == kAddNK || c == kMulNK || c == kPow;
    group.out = reach([](const Member& x) { return x.out; }, false);
    group.a = reach([](const Member& x) { return x.a; }, false);
    if (c == kAddNN || c == kMulNN || b_constant)
        group.b = reach([](const Member& x) { return x.b; }, b_constant);
}

// Run a group as a loop over arrays: its members' nodes are consecutive
// (Program::relocate lays them out so), and so are its operands, or they are
// one node or constant throughout, or (the inputs, which keep their ids) are
// read through their ids.  Each node gets the same IEEE operation on the same
// operands as compute<kCode> gives it, on the hardware; the NaN rule only
// changes a result that came out a NaN, so when any did, the group runs again
// with the rule, from the same operands (no member reads another's node).  A
// square (x ** 2 with the same 2 throughout) is x * x where square_is_product
// proves it pow's bits, in the same loop, and pow's own path afterwards for
// the members it does not (the replay declines where that fails).
template <uint8_t kCode, class A, class B>
AGRAD_ALWAYS_INLINE bool Replay::run_array(Slots s, const Group& group, A a, B b) const {
    // (the slots as doubles: GCC vectorises no store to a union's member)
    double* out = reinterpret_cast<double*>(s.values + members_[group.first].out);
    const uint32_t n = group.count;
    s.clear_marks(members_[group.first].out, n);
    if constexpr (kCode == kPow) {
        // a member pow must compute is marked with a NaN (a NaN operand is
        // one of them), then found and computed
        double left = 0.0;
        for (uint32_t t = 0; t < n; ++t) {
            const double x = a(t), r = x * x;
            const bool product = detail::square_is_product(std::fabs(x), r);
            out[t] = product ? r : std::numeric_limits<double>::quiet_NaN();
            left = product ? left : 1.0;
        }
        if (left != 0.0)
            for (uint32_t t = 0; t < n; ++t)
                if (out[t] != out[t] && float_pow_general(a(t), 2.0, &out[t]) != Status::Ok)
                    return false;
        return true;
    } else {
        // + or * by the table's entry, on the hardware (Arith<false>), then
        // with the NaN rule (Arith<true>)
        auto value = [&](auto arith, uint32_t t) AGRAD_ALWAYS_INLINE_LAMBDA {
            if constexpr (kCode == kCopy)
                return a(t);
            else
                return KindEntry<kCode>::type::template value<decltype(arith)>(a(t), b(t));
        };
        double nan = 0.0;  // (a double: as a bool, GCC vectorises no loop that sets it)
        for (uint32_t t = 0; t < n; ++t) {
            const double r = value(Arith<false>{}, t);
            out[t] = r;
            nan = r != r ? 1.0 : nan;
        }
        if (nan != 0.0 && kCode != kCopy)
            for (uint32_t t = 0; t < n; ++t) out[t] = value(Arith<true>{}, t);
        return true;
    }
}

template <uint8_t kCode>
AGRAD_ALWAYS_INLINE bool Replay::run_group(Slots s, const Group& group) const {
    const Member* m = members_.data() + group.first;
    const uint32_t n = group.count;
    constexpr bool kArrays = kCode == kAddNN || kCode == kAddNK || kCode == kMulNN ||
                             kCode == kMulNK || kCode == kCopy || kCode == kPow;
    if constexpr (kArrays) {
        constexpr bool kConstantB = kCode == kAddNK || kCode == kMulNK || kCode == kPow;
        const bool square = kCode != kPow || (group.b == Reach::kSame && s.k[m[0].b] == 2.0);
        if (group.out == Reach::kConsecutive && square) {
            const Graph::Slot* values = s.values;
            const double* k = s.k;
            // an operand as an array, one number, or through the ids
            auto reach = [&](Reach r, auto id, bool constant, auto f) AGRAD_ALWAYS_INLINE_LAMBDA {
                const uint32_t first = id(m[0]);
                if (r == Reach::kConsecutive) {
                    if (constant) return f([p = k + first](uint32_t t) { return p[t]; });
                    return f([p = reinterpret_cast<const double*>(values + first)](uint32_t t) {
                        return p[t];
                    });
                }
                if (r == Reach::kSame) {
                    const double v = constant ? k[first] : values[first].f;
                    return f([v](uint32_t) { return v; });
                }
                if (constant) return f([k, m, id](uint32_t t) { return k[id(m[t])]; });
                return f([values, m, id](uint32_t t) { return values[id(m[t])].f; });
            };
            auto a_id = [](const Member& x) { return x.a; };
            auto b_id = [](const Member& x) { return x.b; };
            return reach(group.a, a_id, false, [&](auto a) AGRAD_ALWAYS_INLINE_LAMBDA {
                if constexpr (kCode == kCopy || kCode == kPow)
                    return run_array<kCode>(s, group, a, a);
                else
                    return reach(group.b, b_id, kConstantB, [&](auto b) AGRAD_ALWAYS_INLINE_LAMBDA {
                        return run_array<kCode>(s, group, a, b);
                    });
            });
        }
    }
    for (uint32_t t = 0; t < n; ++t)
        if (!compute<kCode>(s, m[t].out, m[t].a, m[t].b)) return false;
    return true;
}

// Every element code: one operation a node.
#define AGRAD_UNARY_ELEMENT(name, ...) X(k##name)
#define AGRAD_ELEMENTS(X) \
    X(kAddNN) X(kAddNK) X(kMulNN) X(kMulNK) X(kPow) AGRAD_UNARY_OPS(AGRAD_UNARY_ELEMENT) X(kCopy)

bool Replay::run(Graph& graph) const {
    if (!floats_only_) return false;
    // The arrays' addresses taken once (value_slots): through set_value
    // every write would reload them, 16% slower on micrograd's chains.
    Graph::Slot* values = graph.value_slots();
    uint8_t* ints = graph.int_marks();
    // Whether every number read is a float: checked once, then taken on
    // trust for as long as no int is written anywhere (a counter).
    if (floats_since_ != graph.int_writes()) {
        for (NodeId id : reads_)
            if (ints[id]) return false;
        floats_since_ = graph.int_writes();
    }
    const double* k = constants_.data();
    const NodeId* operands = operands_.data();
    // After a run completes, every node it wrote holds a float, and keeps it
    // for as long as no int is written anywhere (the same counter): the
    // loops over arrays then leave the int marks be.
    const Slots slots{values, ints, k, marks_clear_since_ == graph.int_writes()};
    marks_clear_since_ = kNever;  // until this run completes
    auto v = [slots](NodeId id) { return slots.v(id); };
    auto set = [slots](NodeId id, double r) { slots.set(id, r); };
    double total = 0.0;
    for (const Instruction& in : code_) {
        switch (in.code) {
#define X(code)                                                      \
    case code:                                                       \
        if (!compute<code>(slots, in.out, in.a, in.b)) return false; \
        break;
            AGRAD_ELEMENTS(X)
#undef X
            case kBundle:
                if (!run_bundle(slots, bundles_[in.out])) return false;
                break;
            case kGroup: {
                const Group& group = groups_[in.out];
                switch (group.code) {
#define X(code)                                           \
    case code:                                            \
        if (!run_group<code>(slots, group)) return false; \
        break;
                    AGRAD_ELEMENTS(X)
#undef X
                }
                break;
            }
            case kStart:
                total = k[in.b];
                break;
            case kAddConst:
                total = add(total, k[in.b]);
                break;
            case kDotNK:
                total = add_mul(total, v(in.a), k[in.b]);
                break;
            case kDotKN:
                total = add_mul(total, v(in.b), k[in.a]);
                break;
            // The runs and chains below add on the hardware and apply the NaN
            // rule (number.hpp) only when their total ends up a NaN: a NaN
            // operand of an addition makes its result a NaN, so a total that is
            // no NaN met no NaN on the way, and the rule changed nothing.
            // Otherwise they run again with the rule, from the same operands
            // (each node is written once, before any read of it).
            case kSumRun: {
                const NodeId* ids = operands + in.a;
                const double before = total;
                total = with_nan_rule([&](auto F) AGRAD_ALWAYS_INLINE_LAMBDA {
                    double sum = before;
                    for (NodeId t = 0; t < in.b; ++t) sum = F.add(sum, v(ids[t]));
                    return sum;
                });
                break;
            }
            case kDotRun: {
                const NodeId* pairs = operands + in.a;
                const double before = total;
                total = with_nan_rule([&](auto F) AGRAD_ALWAYS_INLINE_LAMBDA {
                    double sum = before;
                    for (NodeId t = 0; t < in.b; ++t)
                        sum = F.add_mul(sum, v(pairs[2 * t]), v(pairs[2 * t + 1]));
                    return sum;
                });
                break;
            }
            case kEnd:
                set(in.out, total);
                break;
            case kChain:
                with_nan_rule([&](auto F) AGRAD_ALWAYS_INLINE_LAMBDA {
                    return run_chain(slots, in, F);  // (a NaN product makes the sum a NaN too)
                });
                break;
            case kChainBundle:
                run_chain_bundle(slots, in);
                break;
            case kSumChain:
                with_nan_rule([&](auto F) AGRAD_ALWAYS_INLINE_LAMBDA {
                    double sum = v(in.out);
                    const NodeId* link = operands + in.a;
                    for (NodeId l = 0; l < in.b; ++l, link += 2) {
                        const double t = v(link[0]);
                        sum = (link[1] & kTermFirst) ? F.add(t, sum) : F.add(sum, t);
                        set(link[1] & ~kTermFirst, sum);
                    }
                    return sum;
                });
                break;
        }
    }
    marks_clear_since_ = graph.int_writes();
    return true;
}

// A chain's links from its start: m = w * x, s = s' + m (or m + s'), each
// node written; its total.
template <class F>
AGRAD_ALWAYS_INLINE double Replay::run_chain(Slots s, const Instruction& chain, F arith) const {
    double sum = s.v(chain.out);
    const NodeId* link = operands_.data() + chain.a;
    for (NodeId l = 0; l < chain.b; ++l, link += 4) {
        const double product = arith.mul(s.v(link[0]), s.v(link[1]));
        s.set(link[2], product);
        sum = (link[3] & kTermFirst) ? arith.add(product, sum) : arith.add(sum, product);
        s.set(link[3] & ~kTermFirst, sum);
    }
    return sum;
}

// A kChainBundle's chains, link by link in lockstep on the hardware (whose
// sum does not depend on the order of its operands unless both are NaN),
// their x's and own nodes as arrays when they are blocks (in.a), else
// through their ids; then a chain whose total came out a NaN again alone with the
// NaN rule (as run() runs a kChain), from its start.
void Replay::run_chain_bundle(Slots s, const Instruction& in) const {
    const Instruction* lane = chain_lanes_.data() + in.out;
    double* values = reinterpret_cast<double*>(s.values);
    double sum[kLanes];
    for (uint32_t m = 0; m < kLanes; ++m) sum[m] = values[lane[m].out];
    if (in.a) {
        const NodeId* w_ids[kLanes];  // each link's w's id, 4 apart
        const double* w[kLanes];      // (kWeightBlock: the w's as an array)
        const double* x[kLanes];
        double* own[kLanes];
        for (uint32_t m = 0; m < kLanes; ++m) {
            const NodeId* link = operands_.data() + lane[m].a;
            w_ids[m] = link;
            w[m] = values + link[0];
            x[m] = values + link[1];
            own[m] = values + link[2];
            s.clear_marks(link[2], 2 * size_t{in.b});
        }
        auto lockstep = [&](auto w_at) AGRAD_ALWAYS_INLINE_LAMBDA {
            for (NodeId l = 0; l < in.b; ++l)
                for (uint32_t m = 0; m < kLanes; ++m) {
                    const double product = w_at(m, l) * x[m][l];
                    own[m][2 * l] = product;
                    sum[m] = sum[m] + product;
                    own[m][2 * l + 1] = sum[m];
                }
        };
        if (in.a == kWeightBlock)
            lockstep([&](uint32_t m, NodeId l) AGRAD_ALWAYS_INLINE_LAMBDA { return w[m][l]; });
        else
            lockstep([&](uint32_t m, NodeId l)
                         AGRAD_ALWAYS_INLINE_LAMBDA { return values[w_ids[m][4 * l]]; });
    } else {
        const NodeId* links[kLanes];
        for (uint32_t m = 0; m < kLanes; ++m) links[m] = operands_.data() + lane[m].a;
        for (NodeId l = 0; l < in.b; ++l)
            for (uint32_t m = 0; m < kLanes; ++m) {
                const NodeId* link = links[m] + 4 * l;
                const double product = values[link[0]] * values[link[1]];
                s.set(link[2], product);
                sum[m] = sum[m] + product;
                s.set(link[3] & ~kTermFirst, sum[m]);
            }
    }
    for (uint32_t m = 0; m < kLanes; ++m)
        if (sum[m] != sum[m]) run_chain(s, lane[m], Arith<true>{});
}

// A bundle's kDotRun whose every lane's pairs are (w + t, x + t), two blocks
// of consecutive ids (a neuron's weights, made one after another, and one
// sample's values of the layer below, laid out side by side), becomes a
// kDotBlock: the lanes read their numbers as arrays, not through ids, the
// same products added in the same order.
void Replay::as_block(Instruction* lanes) const {
    for (uint32_t m = 0; m < kLanes; ++m) {
        const NodeId* pairs = operands_.data() + lanes[m].a;
        if (!is_block(pairs, lanes[m].b, 2, pairs[0], 1) ||
            !is_block(pairs + 1, lanes[m].b, 2, pairs[1], 1))
            return;
    }
    for (uint32_t m = 0; m < kLanes; ++m) {
        const NodeId* pairs = operands_.data() + lanes[m].a;
        lanes[m] = {kDotBlock, pairs[1], pairs[0], lanes[m].b};
    }
}

// A bundle's kLanes totals, instruction by instruction, each as run() takes
// it alone: a run on the hardware, and again with the NaN rule for a total
// that came out a NaN (with_nan_rule), from its own total before the run.
AGRAD_ALWAYS_INLINE bool Replay::run_bundle(Slots s, const Bundle& bundle) const {
    const double* k = s.k;
    const NodeId* operands = operands_.data();
    auto v = [s](NodeId id) { return s.v(id); };
    double total[kLanes];
    const Instruction* in = bundled_.data() + bundle.first;
    for (uint32_t p = 0; p < bundle.length; ++p, in += kLanes) {
        switch (in[0].code) {
            case kStart:
                for (uint32_t m = 0; m < kLanes; ++m) total[m] = k[in[m].b];
                break;
            case kAddConst:
                for (uint32_t m = 0; m < kLanes; ++m) total[m] = add(total[m], k[in[m].b]);
                break;
            case kDotNK:
                for (uint32_t m = 0; m < kLanes; ++m)
                    total[m] = add_mul(total[m], v(in[m].a), k[in[m].b]);
                break;
            case kDotKN:
                for (uint32_t m = 0; m < kLanes; ++m)
                    total[m] = add_mul(total[m], v(in[m].b), k[in[m].a]);
                break;
            case kSumRun:
            case kDotRun: {
                const bool dot = in[0].code == kDotRun;
                const NodeId n = in[0].b;  // every lane's (one shape)
                const NodeId* ids[kLanes];
                double before[kLanes];
                for (uint32_t m = 0; m < kLanes; ++m) {
                    ids[m] = operands + in[m].a;
                    before[m] = total[m];
                }
                auto run = [&](auto F, uint32_t m, double sum) AGRAD_ALWAYS_INLINE_LAMBDA {
                    if (dot)
                        for (NodeId t = 0; t < n; ++t)
                            sum = F.add_mul(sum, v(ids[m][2 * t]), v(ids[m][2 * t + 1]));
                    else
                        for (NodeId t = 0; t < n; ++t) sum = F.add(sum, v(ids[m][t]));
                    return sum;
                };
                // on the hardware, the lanes' chains interleaved
                if (dot) {
                    for (NodeId t = 0; t < n; ++t)
                        for (uint32_t m = 0; m < kLanes; ++m)
                            total[m] = total[m] + v(ids[m][2 * t]) * v(ids[m][2 * t + 1]);
                } else {
                    for (NodeId t = 0; t < n; ++t)
                        for (uint32_t m = 0; m < kLanes; ++m) total[m] = total[m] + v(ids[m][t]);
                }
                for (uint32_t m = 0; m < kLanes; ++m)
                    if (total[m] != total[m]) total[m] = run(Arith<true>{}, m, before[m]);
                break;
            }
            case kDotBlock: {
                const NodeId n = in[0].b;
                const double* values = reinterpret_cast<const double*>(s.values);
                const double* w[kLanes];
                const double* x[kLanes];
                double before[kLanes];
                for (uint32_t m = 0; m < kLanes; ++m) {
                    w[m] = values + in[m].a;
                    x[m] = values + in[m].out;
                    before[m] = total[m];
                }
                for (NodeId t = 0; t < n; ++t)
                    for (uint32_t m = 0; m < kLanes; ++m) total[m] = total[m] + w[m][t] * x[m][t];
                for (uint32_t m = 0; m < kLanes; ++m) {
                    if (total[m] == total[m]) continue;
                    double sum = before[m];  // again with the NaN rule
                    for (NodeId t = 0; t < n; ++t) sum = agrad::add_mul(sum, w[m][t], x[m][t]);
                    total[m] = sum;
                }
                break;
            }
            case kEnd:
                for (uint32_t m = 0; m < kLanes; ++m) s.set(in[m].out, total[m]);
                break;
            default:
                return false;  // (bundle_totals bundles no other code)
        }
    }
    return true;
}

#undef AGRAD_ELEMENTS
#undef AGRAD_UNARY_ELEMENT

}  // namespace agrad
