// A recorded program: the nodes agrad.compile recorded, decoded once and run
// in both directions.
//
// The arena (graph.hpp) holds nodes, values, gradients, reference counts and
// labels, and runs eager code: each operation as Python makes it, backward()
// by a depth-first search at every call.  A recording's graph has the same
// shape at every replay, so what the arena would work out again at each call
// is worked out once here: the forward pass as a flat list of IEEE
// operations (Replay, replay.hpp), and each output's backward pass as the
// steps the search made, decoded, merged and fused (Schedule).  Both read
// and write the arena through its public interface only.
#pragma once

#include <cstdint>
#include <vector>

#include "agrad/graph.hpp"
#include "agrad/replay.hpp"

namespace agrad {

// One root's backward pass, kept: the nodes the search reaches (their
// gradients are zeroed first) and, in the order backward() takes them, the
// steps that do something; a leaf's, a custom node's and a fused node's own
// step change nothing, and are left out.  Each step is decoded once, when
// the schedule is made: its kind (which operation, which operands are
// constants) and its operands, so a pass runs one switch per step on ids,
// not the arena's lookups.  Consecutive steps of one fused node's terms whose
// operands are all nodes (a dot's whole row, once the inputs' subtrees are
// done) become one step that loops over them, in the same order, without a
// switch each; so do the links of a chain s = s' + w * x (fuse_chains).
//
// Steps that can run together without changing the order of the additions
// into any gradient are taken by height, and those of one operation at one
// height run as one loop (a group; group_independent).
//
// The schedule is made at the first pass and again whenever graph.shape()
// has moved on: it is always the very order the search would make.
class Schedule {
public:
    // backward(root) through the schedule: the same gradients, bit for bit,
    // and the same error, as Graph's own pass.
    Status run(Graph& graph, NodeId root);

private:
    struct Decoded {
        uint8_t kind;  // a NodeKind, or a Kind of program.cpp
        NodeId node;
        NodeId a, b;  // the operands: node ids, or a constant's index in term_constants_
                      // (x * k's k, a dot term's), pow_constants_ (x ** k's k); for a
                      // run of terms, its first operand in `operands` and its length
    };
    void make(Graph& graph, NodeId root);
    Decoded decode(Graph& graph, const Graph::Step& step);
    static bool dot_arrays(NodeId* pairs, size_t n);
    void merge_runs();
    std::vector<uint8_t> count_adders(size_t id_limit) const;
    static bool is_link(const std::vector<Decoded>& steps, size_t i, ptrdiff_t step, NodeId* below,
                        NodeId* product);
    void gather_links(size_t id_limit);
    void fuse_chains(const std::vector<uint8_t>& adders);
    void share_powers(const Graph& graph);
    void group_independent(size_t id_limit);
    void fuse_sums(const std::vector<uint8_t>& adders);
    template <bool kFloats, bool kRule>  // kFloats: every value it reads is a float
    Status run_decoded(Graph& graph, const Decoded& step, const NodeId* operands, double* powers,
                       bool* nan_seen);
    int8_t shared_operand(uint8_t kind, const size_t* members, size_t count) const;
    struct Group;
    void set_arrays(Group& group) const;
    template <uint8_t kKind>
    void run_arrays(Graph& graph, const Group& group, const Decoded* members, bool* nan_seen) const;
    template <bool kFloats, bool kRule>
    Status run_shared(Graph& graph, const Group& group, const Decoded* members);
    template <bool kFloats, bool kRule>
    Status run_step(Graph& graph, const Decoded& step, const NodeId* operands, double* powers,
                    bool* nan_seen);
    template <bool kRule>
    Status pass(Graph& graph, NodeId root, bool floats, bool* constant_nan,
                const std::vector<Decoded>& steps);
    template <bool kRule, bool kFloats>
    Status pass_of(Graph& graph, NodeId root, bool* constant_nan,
                   const std::vector<Decoded>& steps);
    void zero(Graph& graph) const;
    bool reads_floats_only(const Graph& graph);

    uint64_t shape_ = 0;              // graph.shape() when made (0: not made yet)
    std::vector<NodeId> spans_;       // the reached nodes, as [begin, end) pairs of consecutive ids
    std::vector<NodeId> sink_spans_;  // the search's sinks, for the NaN check, the same way
    std::vector<Decoded> steps_;
    // steps_ with the steps of one operation that can run together as groups
    // (group_independent): what a pass runs, unless empty
    struct Group {
        uint8_t kind;
        // the operand (0: a, 1: b) that is one node in every member, whose
        // gradient is then summed in a register, or -1
        int8_t shared;
        uint32_t first, count;  // members_[first, first + count)
        // run_arrays may take it (set_arrays): its members' nodes are
        // consecutive, `step` 1 or -1 in members' order, and so are their
        // operands, or they are reached through their ids
        bool arrays = false;
        int8_t step = 0;
        Reach a = Reach::kIndexed, b = Reach::kIndexed;
    };
    std::vector<Decoded> grouped_;
    std::vector<Group> groups_;
    std::vector<Decoded> members_;
    std::vector<NodeId> operands_;  // the runs' terms: ids, or (w, x) pairs; chains' links
    // a sum's or dot's constant term or operand: its value as a double, and
    // its gradient's slot in the node's list, found once when the schedule
    // is made rather than through node, list and constants at every pass (an
    // MLP's bias term b * 1 writes one a neuron a sample); and x * k's k
    // (grad unused: its gradient is the node's).  The slot stays where it is
    // while the schedule is current: a list's constants change only with
    // the graph's shape, and moving the lists moves no constant
    // (Graph::ChildList).
    struct TermConstant {
        double value;
        double* grad;
    };
    std::vector<TermConstant> term_constants_;
    // x ** k's k as a double and k - 1 (as Python computes it), and for a
    // shared pow(x, k - 1) its slot in powers_ (share_powers)
    struct PowConstant {
        double value, minus_one;
        NodeId shared;
    };
    std::vector<PowConstant> pow_constants_;
    // pow(x, k - 1) of a `x ** k` repeated on the same x and k, computed by
    // its first step in backward's order and read by the others (share_powers,
    // PowConstant::shared)
    std::vector<double> powers_;
    // graph.int_writes() when every reached node was last seen holding a
    // float (kNever: not since the schedule was made)
    static constexpr uint64_t kNever = ~uint64_t{0};
    uint64_t floats_since_ = kNever;
};

// What agrad.compile keeps of one recording, for the engine's part: the
// nodes made by operations, in the order they were made, replayed forward
// (decoded, or by Graph::recompute), and the outputs' kept backward passes.
// The program holds the recording's references to its nodes (the log's) and
// gives them back when it goes.
class Program {
public:
    // `log`: every node made while recording, one reference each, in the
    // order made.  `outputs`: the roots backward() will be called on; those
    // the program made keep their backward schedule for as long as the
    // program lives (a root made before the recording is not the program's
    // to mark).  `inputs`: leaves of the log a caller writes new numbers into
    // before each forward() (their ids may change at the first: inputs()).
    Program(Graph& graph, std::vector<NodeId> log, const std::vector<NodeId>& outputs,
            std::vector<NodeId> inputs = {});
    Program(const Program&) = delete;
    Program& operator=(const Program&) = delete;
    ~Program();

    // Every operation again, in the recorded order, from the inputs' current
    // values: decoded when every number read is a float, else (or when an
    // operation fails there) by the arena's general rules.  Ok, or the first
    // operation's error.
    Status forward();

    const std::vector<NodeId>& inputs() const { return inputs_; }
    size_t operations() const { return steps_.size(); }
    size_t nodes() const { return log_.size(); }

private:
    bool lay_out();
    Graph& graph_;
    std::vector<NodeId> log_;        // every node made while recording, one reference each
    std::vector<NodeId> steps_;      // the logged nodes made by operations, in creation order
    std::vector<NodeId> scheduled_;  // the outputs whose backward schedule is kept
    std::vector<NodeId> inputs_;     // (inputs())
    Replay replay_;                  // steps_ decoded, made at the first run
    bool laid_out_ = false;          // (lay_out)
};

}  // namespace agrad
