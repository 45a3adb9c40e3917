// A recorded program's forward pass, decoded once and replayed on floats: the
// forward half of agrad::Program (program.hpp), which falls back on
// Graph::recompute when this declines.
//
// agrad.compile keeps the nodes a function made, in the order it made them;
// a replay recomputes each with Graph::recompute, which decodes the node
// (its op, inline constants, list entries) and follows Python's int and float
// rules at every step.  When every number the program reads from outside
// (its inputs, the parameters, constant leaves) is a float, every node it
// makes is a float too (float op anything is a float; a sum or dot with a
// node term reaches a float at that term), so those rules reduce to IEEE
// operations on doubles.  Replay decodes the program once into a flat list
// of such operations, a fused sum or dot becoming one running total, and
// runs it with no Number and no lookup: the same operations in the same
// order, so the same bits as recompute.
//
// An operation the program repeats on the same operands (a softmax's four
// divisions, each `e * s**-1` of one sum s, make s**-1 four times) is
// computed once, where eager code first computed it, and copied into the
// later nodes: the same IEEE operation on the same bits gives the same bits,
// and an error would have stopped the replay at the first one already.
//
// Nodes that read nothing of each other are computed by depth, and those of
// one operation at one depth as one loop (a group): the same operations on
// the same operands, so the same bits, in another order (group_independent);
// running totals of one shape at one depth, four at a time in lockstep (a
// bundle: bundle_totals).
//
// Replay declines, and the caller runs recompute instead, when it cannot
// promise that: a number read is an int, the program has a sum or dot of
// constants only (Python may keep those ints), or an operation fails (the
// caller's recompute then fails at the same node and reports it).
#pragma once

#include <cstdint>
#include <vector>

#include "agrad/graph.hpp"

namespace agrad {

// Whether ids[0], ids[stride], ..., ids[(n - 1) * stride] are first,
// first + step, first + 2 * step, ...: n nodes a loop may read or write as
// one array (step 1 or -1), or every other node of one (step 2).  The
// forward and backward passes' loops over arrays both ask it.
inline bool is_block(const NodeId* ids, size_t n, size_t stride, NodeId first, int64_t step) {
    for (size_t t = 0; t < n; ++t)
        if (static_cast<int64_t>(ids[t * stride]) !=
            static_cast<int64_t>(first) + step * static_cast<int64_t>(t))
            return false;
    return true;
}

class Replay {
public:
    // Decodes `steps`, the program's nodes made by operations, in the order
    // they were made.  Made anew when graph.shape() moves on.
    void build(const Graph& graph, const std::vector<NodeId>& steps);
    bool built_for(const Graph& graph) const { return built_ && shape_ == graph.shape(); }

    // Recomputes every step, or returns false (possibly having written some
    // of them) when the program must go through Graph::recompute instead.
    bool run(Graph& graph) const;

    // The nodes a run writes, in the order it writes them, in blocks: each
    // group's members one after another, a block of their own, and the other
    // instructions' nodes between groups a block (*ends: where each block
    // ends in the result; both empty if the program cannot be replayed).
    std::vector<NodeId> written(std::vector<size_t>* ends) const;

private:
    // A node's own operation is its NodeKind (graph.hpp); then these.
    enum Code : uint8_t {
        kStart = kNodeKinds,  // total = constant b
        kAddConst,            // total += constant b
        kDotNK,               // total += node a * constant b
        kDotKN,               // total += constant a * node b
        kSumRun,              // total += each node of operands_[a, a + b)
        kDotRun,              // total += w * x for each pair (w, x) of operands_[a, a + 2b)
        kEnd,                 // node out = total
        kChain,     // from node out: b links (w, x, m, s) at operands_[a]: m = w * x, s = s' + m
        kSumChain,  // from node out: b links (t, s) at operands_[a]: s = s' + t (the builtin sum)
        kCopy,      // node out = node a, made earlier by the same operation on the same operands
        kGroup,   // groups_[out]: nodes of one operation, none reading another (group_independent)
        kBundle,  // bundles_[out]: kLanes running totals of one shape, in lockstep (bundle_totals)
        kDotBlock,     // in a bundle, a kDotRun of consecutive ids: total += w * x for b pairs
                       // (node a + t, node out + t)
        kChainBundle,  // chain_lanes_[out, out + kLanes): kChains of b links in lockstep,
                       // a: what each reads as arrays (array_chain) (bundle_chains)
    };
    // A link's s with this bit: its addition was written m + s' (t + s').
    static constexpr NodeId kTermFirst = 0x80000000u;
    struct Instruction {
        uint8_t code;      // a NodeKind or a Code
        NodeId out, a, b;  // node ids, or indexes into constants_ (K)
    };
    // The nodes of one operation in a group: one loop, no switch a node.
    struct Group {
        uint8_t code;    // a NodeKind or kCopy
        uint32_t first;  // members_[first, first + count)
        uint32_t count;
        // how its loop reaches the members' nodes, operands and constants
        // (graph.hpp; as an array only in the members' order, ascending)
        Reach out = Reach::kIndexed, a = Reach::kIndexed, b = Reach::kIndexed;
    };
    struct Member {
        NodeId out, a, b;  // as an Instruction's
    };
    // kLanes sums or dots whose instructions are the same codes, their runs
    // the same lengths, none reading another's node: instruction p of lane m
    // at bundled_[first + p * kLanes + m], for p < length.
    static constexpr uint32_t kLanes = 4;
    struct Bundle {
        uint32_t first, length;
    };
    struct Slots;
    template <uint8_t kCode>
    static bool compute(Slots slots, NodeId out, NodeId a, NodeId b);
    void set_reach(Group& group) const;
    template <uint8_t kCode>
    bool run_group(Slots slots, const Group& group) const;
    template <uint8_t kCode, class A, class B>
    bool run_array(Slots slots, const Group& group, A a, B b) const;
    bool run_bundle(Slots slots, const Bundle& bundle) const;
    template <class F>
    double run_chain(Slots slots, const Instruction& chain, F arith) const;
    void run_chain_bundle(Slots slots, const Instruction& in) const;
    static constexpr uint8_t kBlocks = 1, kWeightBlock = 2;  // (array_chain)
    uint8_t array_chain(const Instruction& chain) const;
    void bundle_chains(const std::vector<uint32_t>& chains, std::vector<Instruction>* out);
    void as_block(Instruction* lanes) const;
    void bundle_totals(const std::vector<std::pair<uint32_t, uint32_t>>& totals,
                       std::vector<Instruction>* out);
    template <class F>
    void for_each_read(const Instruction& in, F&& f) const;
    template <class F>
    void for_each_write(const Instruction& in, F&& f) const;
    void fuse_chains();
    void fuse_sums();
    void share_identical();
    void group_independent(size_t id_limit);
    std::vector<Instruction> code_;
    std::vector<Group> groups_;
    std::vector<Member> members_;
    std::vector<Bundle> bundles_;
    std::vector<Instruction> bundled_;
    std::vector<Instruction> chain_lanes_;  // the kChains of the kChainBundles
    std::vector<double> constants_;
    std::vector<NodeId> operands_;  // the runs' terms: ids, or (w, x) pairs
    std::vector<NodeId> reads_;     // nodes read that the program does not make
    uint64_t shape_ = 0;
    // graph.int_writes() when every node in reads_ was last seen holding a
    // float (kNever: not since the program was decoded)
    static constexpr uint64_t kNever = ~uint64_t{0};
    mutable uint64_t floats_since_ = kNever;
    // graph.int_writes() when a run last completed (Slots::marks_clear)
    mutable uint64_t marks_clear_since_ = kNever;
    bool built_ = false;
    bool floats_only_ = false;  // false: no program of only floats
};

}  // namespace agrad
