// The arena: every scalar node, and eager reverse-mode differentiation over it.
//
// Every Value is a Node in the Graph's arena, addressed by a 32-bit NodeId.
// A node holds an op code and up to two children inline (an n-ary node keeps
// a list elsewhere); its value (a Python-style int or float) and gradient sit
// at the same index in arrays beside the nodes.
// Nodes are reference counted: one reference for each parent that uses the
// node, and one for the Python object that stands for it, if any.  A node
// whose count drops to zero goes back on a free list, and so, one by one and
// without recursion, do the children it held; so memory stays flat while a
// training loop rebuilds its graph every step, and after warm-up no node is
// allocated from the heap.
//
// backward() sorts the graph with an iterative depth-first search that marks
// visited nodes with an epoch stamp (no hash set), in exactly the order of the
// recursive search in agrad.pure, then sweeps it in reverse, switching on the
// op code.  Both engines therefore add gradient contributions in the same
// order and get the same bits.
//
// What agrad.compile makes of a recorded graph, decoded once and run in both
// directions, is the program's (program.hpp): it reads and writes the arena
// through the public interface below, as the binding does; nothing here is
// a friend's.  A kept backward schedule is stored here, by its root, only
// because eager backward() on that root takes it and it goes when the root
// is freed (keep_schedule).
//
// The engine knows nothing of Python.  A node's `owner` is an opaque pointer
// the binding uses to find the Python object that stands for the node.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <unordered_map>
#include <utility>
#include <type_traits>
#include <vector>

#include "agrad/number.hpp"
#include "agrad/ops.hpp"

namespace agrad {

using NodeId = uint32_t;

// One side of an operation: a node, or a plain number that becomes a
// constant leaf only once the operation has succeeded.
struct Operand {
    static constexpr NodeId kNumber = 0xFFFFFFFFu;
    NodeId node = kNumber;
    Number number;

    static Operand of_node(NodeId id) {
        Operand o;
        o.node = id;
        return o;
    }
    static Operand of_number(Number n) {
        Operand o;
        o.number = n;
        return o;
    }
    bool is_node() const { return node != kNumber; }
};

// A node's own operation as the replayed passes decode it once: the op, and
// whether its second operand is an inline constant (K) or a node (N).  The
// forward replay (replay.hpp) and a kept backward schedule (program.cpp)
// number their own further codes from kNodeKinds on.
enum NodeKind : uint8_t {
    kAddNN,
    kAddNK,
    kMulNN,
    kMulNK,
    kPow,
#define AGRAD_KIND_ENTRY(name, ...) k##name,
    AGRAD_UNARY_OPS(AGRAD_KIND_ENTRY)  // kExp, kLog, ...: the table's entries (ops.hpp)
#undef AGRAD_KIND_ENTRY
    kNodeKinds,  // not an operation of one or two operands
};

// The table's entry (ops.hpp) of a kind known at compile time:
// KindEntry<kExp>::type is ops::Exp, KindEntry<kAddNK>::type ops::Add.
template <uint8_t kKind>
struct KindEntry;
#define AGRAD_KIND_TYPE(kind, entry) \
    template <>                      \
    struct KindEntry<kind> {         \
        using type = ops::entry;     \
    };
AGRAD_KIND_TYPE(kAddNN, Add)
AGRAD_KIND_TYPE(kAddNK, Add)
AGRAD_KIND_TYPE(kMulNN, Mul)
AGRAD_KIND_TYPE(kMulNK, Mul)
AGRAD_KIND_TYPE(kPow, Pow)
#define AGRAD_UNARY_KIND_TYPE(name, ...) AGRAD_KIND_TYPE(k##name, name)
AGRAD_UNARY_OPS(AGRAD_UNARY_KIND_TYPE)
#undef AGRAD_UNARY_KIND_TYPE
#undef AGRAD_KIND_TYPE

// The table's entry (ops.hpp) of a unary kind, as with_unary gives it for an op.
template <class F>
Status with_unary_kind(uint8_t kind, F&& f) {
    switch (kind) {
#define AGRAD_KIND_CALL(name, ...) \
    case k##name:                  \
        return f(ops::name{});
        AGRAD_UNARY_OPS(AGRAD_KIND_CALL)
#undef AGRAD_KIND_CALL
        default:
            return Status::MathDomain;
    }
}

inline NodeKind unary_kind(Op op) {
    switch (op) {
#define AGRAD_KIND_OF(name, ...) \
    case Op::name:               \
        return k##name;
        AGRAD_UNARY_OPS(AGRAD_KIND_OF)
#undef AGRAD_KIND_OF
        default:
            return kNodeKinds;
    }
}

// How a loop over a group's members (the replay's forward groups, a kept
// schedule's backward ones) reaches one of their operands or nodes: through
// each member's id, or as an array, when each id follows the last (step 1) or
// precedes it (step -1), or as one number, when `same` says every member's
// is the first's.  (Program::lay_out gives a group's nodes consecutive ids.)
enum class Reach : uint8_t { kIndexed, kConsecutive, kSame };
template <class Id, class Same>
Reach reach_of(size_t count, Id id, Same same, int* step) {
    bool up = true, down = true, all_same = true;
    for (size_t t = 1; t < count; ++t) {
        up &= id(t) == id(t - 1) + 1;
        down &= id(t) + 1 == id(t - 1);
        all_same &= same(t);
    }
    *step = up ? 1 : down ? -1 : 0;
    return count > 1 && (up || down) ? Reach::kConsecutive
           : all_same                ? Reach::kSame
                                     : Reach::kIndexed;
}

class Schedule;  // program.hpp: a root's backward pass, kept

// A constant's gradient is written once in a backward pass, never added to,
// so a pass on the hardware alone notes a NaN there as it writes it; a node's
// gradient keeps any NaN added into it, and is looked at once, at the end.
template <bool kRule>
inline void write_constant_grad(double& slot, double g, bool* nan_seen) {
    slot = g;
    if (!kRule) *nan_seen |= g != g;
}

class Graph {
public:
    Graph();
    ~Graph();  // (out of line: Schedule is complete only there)
    Graph(const Graph&) = delete;
    Graph& operator=(const Graph&) = delete;

    // A node's value and gradient live beside it, in arrays of their own
    // (values_, grads_, ints_), not in Node: the passes that run most (a
    // replay, a backward pass) read and write those alone, 17 bytes a node
    // rather than a 64-byte node each.
    union Slot {
        int64_t i;
        double f;
    };
    struct Node {
        union {
            int64_t i;
            double f;
        } param;               // Pow: the exponent; Sum: the start; or an inline constant
        double constant_grad;  // the inline constant's gradient
        NodeId child[2];       // Sum, Dot, Custom: child[0] indexes lists_
        uint32_t refs;
        uint32_t stamp;  // last backward() that visited this node
        void* owner;
        Op op;
        uint8_t flags;
    };

    // -- making nodes.  A new node has no reference of its own: whoever keeps
    // it calls retain(); a failed operation leaves nothing behind.
    //
    // A model's weights are leaves made one at a time.  After a large graph
    // was freed they would pop from wherever its release left ids, scattered
    // over the arena (on micrograd's demo after the benchmarks' 10^5-op
    // graph, 337 weights over 765,000 ids: its compiled step 143 us against
    // 128).  So a leaf first sorts the free list once enough was freed since
    // the last sort to pay for it: the sort is linear in the free list (at
    // most twice the frees it waited for) and the arena's words (at most
    // as many).
    NodeId leaf(Number value) {
        if (frees_since_sort_ >= std::max({kSortAfterFrees, free_.size() / 2, nodes_.size() / 64}))
            sort_free_list();
        NodeId id = allocate(Op::Leaf);
        set_value(id, value);
        return id;
    }
    // n leaves at consecutive ids (free_span), the i-th holding values[i]:
    // the first.  A model's weights made so are one block of the arena, which
    // a compiled dot reads as an array (Schedule::dot_arrays, kDotBlock)
    // however scattered the free ids were.
    NodeId leaves(const Number* values, size_t n);
    Status binary(Op op, Operand a, Operand b, NodeId* out);  // Add or Mul
    Status power(NodeId base, Number exponent, NodeId* out);
    Status unary(Op op, NodeId a, NodeId* out);  // Exp, Log, Tanh, Relu, Sigmoid
    Status sum(const Operand* terms, size_t n, Number start, NodeId* out);
    Status dot(const Operand* weights, const Operand* inputs, size_t n, NodeId* out);
    NodeId custom(Number value, const NodeId* children, size_t n, std::string op_name);

    void retain(NodeId id) { ++nodes_[id].refs; }
    void release(NodeId id) {
        if (--nodes_[id].refs == 0) free_unreferenced(id);
    }

    // Gradients of everything reachable from root: 0, root's 1, then the
    // chain rule in reverse topological order.  If a local gradient fails
    // (an overflow, say) the graph's gradients are left at 0.
    Status backward(NodeId root);

    // A root whose graph is replayed (agrad.compile) keeps the schedule of its
    // backward pass (Schedule, program.hpp): the graph's shape is the same at
    // every replay, so the depth-first search need not run again.  The kept
    // schedule is the very one the search would make, and is made anew after
    // anything that could change a graph's shape (materialize_constants); it
    // goes when the root is freed or forget_schedule is called.  The arena
    // stores it, and backward() takes it, because a root's backward() is
    // eager code's call (Python's loss.backward()) and a schedule lives as
    // long as its root: where nodes are freed is where that is known.  What
    // the schedule is and how it runs is the program's (program.cpp).
    void keep_schedule(NodeId root);
    void forget_schedule(NodeId root);
    bool keeps_schedule(NodeId root) const { return (nodes_[root].flags & kKeepsSchedule) != 0; }

    // -- second derivatives (cpp/higher.cpp), for agrad.grad on this engine.
    // Both sweeps take backward()'s steps in its order (topological_order,
    // a fused node's terms included), over the nodes that lead to an input
    // only, and leave every node's gradient as it was.
    //
    // gradients: backward()'s own formulas (propagate), always with the NaN
    // rule, into out[i] for inputs[i] (0.0 where the root does not reach it).
    Status gradients(NodeId root, const NodeId* inputs, size_t n, double* out);
    // gradient_graph: the same sweep written as the operations a Value's
    // number slots make (binary, power, sum and each table entry's
    // gradient()), so out[i] is a node whose graph can be differentiated
    // again and which a recording logs as eager code would.  out[i] comes
    // with a reference for the caller.  `guard` (when not null) is told each
    // comparison the sweep makes (relu's `y > 0`), as a recording keeps it.
    // A reached node made by hand (Custom) has no local gradient to write:
    // the sweep stops there, sets *refused to it, and leaves out alone.
    using GuardHook = void (*)(Comparison, NodeId left, Operand right, bool outcome);
    static constexpr NodeId kNoNode = Operand::kNumber;
    Status gradient_graph(NodeId root, const NodeId* inputs, size_t n, GuardHook guard, NodeId* out,
                          NodeId* refused);

    // The depth-first search backward() makes: every reached node's gradient
    // zeroed, then its steps in post-order (a step is a node's chain rule, or
    // for a fused sum or dot one term's share of it: the term gets its
    // gradient where the builtin sum's chain of additions would have given
    // it, so a fused node is bit-identical to the chain in any graph).  The
    // result, and sinks(), are valid until the next search.
    struct Step {
        static constexpr uint32_t kWholeNode = 0xFFFFFFFFu;
        NodeId node;
        uint32_t term;  // kWholeNode, or the child index that ends a term
    };
    const std::vector<Step>& search(NodeId root) {
        topological_order(root);
        return order_;
    }
    // The reached nodes where a NaN of a backward pass's gradients ends up
    // (see backward()): those without children, custom and fused nodes.
    const std::vector<NodeId>& sinks() const { return sinks_; }

    // Children in the order the depth-first search visits them; an entry of
    // an n-ary node may be a constant (is_constant) until materialize_constants.
    size_t child_count(NodeId id) const;
    NodeId child(NodeId id, size_t i) const;
    // An n-ary node's entry that is a constant kept in its list, not a node;
    // child_value reads either kind.
    static bool is_constant(NodeId entry) { return (entry & kConstantEntry) != 0; }
    static uint32_t constant_index(NodeId entry) { return entry & ~kConstantEntry; }
    Number child_value(NodeId id, size_t i) const {
        const Node& n = nodes_[id];
        if (!has_list(n.op)) return value(n.child[i]);
        const ChildList& list = lists_[n.child[0]];
        return entry_value(list, list.entries[i]);
    }
    // How Python computed a fused node (ChildList): the entry that starts its
    // first term with a Value, and for a dot's pair whether it was x * w.
    size_t first_node_term(NodeId id) const { return lists_[nodes_[id].child[0]].first_node; }
    bool input_first(NodeId id, size_t pair) const {
        return lists_[nodes_[id].child[0]].input_first[pair] != 0;
    }

    // The constant of `w * 2.5` (or `w + 1`, `-w`, `y - w`, or an input of
    // dot(weights, inputs)) lives inside its one parent, value and gradient,
    // rather than as a node of its own: the chapter's loss has as many
    // constants as operations.  Until this is called such a parent lacks
    // those children; after it, each constant is an ordinary leaf node with
    // the same value and gradient, for Python to see.
    void materialize_constants(NodeId id);

    // Node ids moved: from[i] to to[i], `to` a permutation of `from`.
    class Moves {
    public:
        Moves(std::vector<NodeId> from, std::vector<NodeId> to);
        NodeId operator()(NodeId id) const;  // its new id (itself if it does not move)
        const std::vector<NodeId>& from() const { return from_; }
        const std::vector<NodeId>& to() const { return to_; }

    private:
        std::vector<NodeId> from_, to_;
        NodeId first_ = 0;             // the least id of from_
        std::vector<NodeId> new_ids_;  // [id - first_]: its new id, or kNoNode
    };
    // Moves nodes to other ids, for agrad.compile's program (Program::
    // lay_out), each with its value, gradient, label and everything else;
    // the children of `parents` are rewritten to match.  Only for nodes that
    // nothing but `parents` refers to (no Python object, no other node, no
    // kept schedule): the caller checks, by references().  `to` is a
    // permutation of `from`, or ids free_span() gave, and then the ids left
    // are freed.  The graph's shape moves on.
    void relocate(const Moves& moves, const std::vector<NodeId>& parents);
    // n consecutive free ids, taken from the first run of the free list, from
    // its least ids, that holds them (a program laid out before and freed
    // since), or made new: the first, or kNoNode if the arena cannot hold them.
    NodeId free_span(size_t n);
    uint32_t references(NodeId id) const { return nodes_[id].refs; }

    // -- reading and writing a node
    Number value(NodeId id) const {
        return ints_[id] ? Number::of_int(values_[id].i) : Number::of_float(values_[id].f);
    }
    void set_value(NodeId id, Number v) {
        if (v.is_int) {
            values_[id].i = v.i;
            ints_[id] = 1;
            ++int_writes_;
        } else {
            values_[id].f = v.f;
            ints_[id] = 0;
        }
    }
    double grad(NodeId id) const { return grads_[id]; }
    void set_grad(NodeId id, double g) { grads_[id] = g; }
    // The gradients of a node's constants: the inline one's (`w * 2.5`) and,
    // for an n-ary node, each kept in its list (by constant_index).
    struct Constant {
        Number value;
        double grad;
    };
    bool has_inline_constant(NodeId id) const { return (nodes_[id].flags & kInlineConstant) != 0; }
    double& constant_grad(NodeId id) { return nodes_[id].constant_grad; }
    Constant& list_constant(NodeId id, uint32_t k) {
        return lists_[nodes_[id].child[0]].constants[k];
    }
    void zero_gradients(NodeId id);  // the node's and its constants'
    Op op(NodeId id) const { return nodes_[id].op; }
    NodeKind node_kind(NodeId id) const;
    Number param(NodeId id) const {
        const Node& n = nodes_[id];
        return (n.flags & kParamIsInt) ? Number::of_int(n.param.i) : Number::of_float(n.param.f);
    }
    // The raw arrays beside the nodes, for a pass over many nodes (a replay)
    // that keeps their addresses in registers: through set_value every write
    // would reload them, since the compiler cannot tell the stores do not
    // move the arrays.  Valid until the next node is made.  A float is
    // written as set_value writes it (the value, then int mark 0); an int
    // only through set_value, which counts it.
    Slot* value_slots() { return values_.data(); }
    const Slot* value_slots() const { return values_.data(); }
    uint8_t* int_marks() { return ints_.data(); }
    const uint8_t* int_marks() const { return ints_.data(); }
    double* grad_slots() { return grads_.data(); }
    // Counts the ints written into any node's value: while it stands still,
    // nodes seen holding floats still do.
    uint64_t int_writes() const { return int_writes_; }
    // Every node id is below this.
    size_t id_limit() const { return nodes_.size(); }
    void* owner(NodeId id) const { return nodes_[id].owner; }
    void set_owner(NodeId id, void* owner) { nodes_[id].owner = owner; }

    const std::string& label(NodeId id) const;
    void set_label(NodeId id, std::string label);
    const std::string& op_name(NodeId id) const;  // a Custom node's op text

    // -- recording, for agrad.compile.  While a thread records, every node it
    // makes is appended to its log and gets one reference for the log's
    // owner, so nothing made during the recording is freed (or its id reused)
    // before the program built from the log lets it go.  The log is per
    // thread: another thread's nodes, made while this one records, are not
    // part of its program.
    //
    // A replay reads the program's nodes in the order they were made: the
    // free list is sorted first so that they come out of it in ascending
    // ids, neighbours in the arena rather than wherever earlier graphs left
    // holes (on a free list of 200,000 nodes this made a replay 3x faster).
    void begin_recording(std::vector<NodeId>* log) {
        sort_free_list();
        log_ = log;
        ++recorders_;
    }
    void end_recording() {
        log_ = nullptr;
        --recorders_;
    }
    bool recording() const { return recorders_ != 0 && log_ != nullptr; }

    // A node made by an operation gets its value again from its children's
    // current values, by the very operation that made it (Python's number
    // rules, the same IEEE operations in the same order).  On an error the
    // node keeps its old value.  A Custom node's value was given, not
    // computed: it is never recomputed (the binding refuses to replay one).
    Status recompute(NodeId id);

    // Counts the changes to any graph's shape (see materialize_constants):
    // whatever was derived from a graph's structure is stale once it moves.
    uint64_t shape() const { return shape_; }

    // -- accounting, for tests and benchmarks
    size_t live_nodes() const { return nodes_.size() - free_.size(); }
    size_t capacity() const { return nodes_.capacity(); }
    static constexpr size_t node_bytes() {
        return sizeof(Node) + sizeof(Slot) + sizeof(double) + sizeof(uint8_t);
    }

private:
    static constexpr uint8_t kParamIsInt = 2;
    static constexpr uint8_t kHasLabel = 4;
    static constexpr uint8_t kHasOpName = 8;
    static constexpr uint8_t kInlineConstant = 16;  // child[1] is the number in param
    static constexpr uint8_t kKeepsSchedule = 32;   // schedules_ has this root's

    static bool has_list(Op op) { return op == Op::Sum || op == Op::Dot || op == Op::Custom; }

    // An n-ary node's children.  An entry with kConstantEntry set is not a
    // node but the index of a constant kept in the list itself.
    static constexpr NodeId kConstantEntry = 0x80000000u;
    // How Python computed a fused node, kept because materialize_constants
    // turns constants into nodes and the order of two NaN operands decides a
    // NaN's bits (number.hpp).  Python's sum() adds plain numbers until its
    // first Value term, and there `total + v` is v.__radd__(total), which
    // computes v + total; `c * x` with c a number is x.__rmul__(c), x * c.
    struct ChildList {
        std::vector<NodeId> entries;
        std::vector<Constant> constants;
        uint32_t first_node = 0;           // the entry that starts the first term with a Value
        std::vector<uint8_t> input_first;  // dot, per pair: 1 when its product was x * w
    };
    // lists_ grows by moving its lists, whose constants stay where they are:
    // a kept schedule holds their gradients' addresses (Schedule::TermConstant)
    static_assert(std::is_nothrow_move_constructible_v<ChildList>);
    void append(ChildList& list, const Operand& o) {
        if (o.is_node()) {
            ++nodes_[o.node].refs;
            list.entries.push_back(o.node);
        } else {
            list.entries.push_back(kConstantEntry | static_cast<NodeId>(list.constants.size()));
            list.constants.push_back({o.number, 0.0});
        }
    }
    Number entry_value(const ChildList& list, NodeId entry) const {
        return is_constant(entry) ? list.constants[entry & ~kConstantEntry].value : value(entry);
    }
    template <bool kRule>
    void add_to_grad(ChildList& list, NodeId entry, double contribution) {
        if (is_constant(entry))
            set_constant_grad<kRule>(list.constants[entry & ~kConstantEntry].grad,
                                     Arith<kRule>::add(0.0, contribution));
        else
            grads_[entry] = Arith<kRule>::add(grads_[entry], contribution);
    }
    template <bool kRule>
    void set_constant_grad(double& slot, double g) {
        write_constant_grad<kRule>(slot, g, &nan_seen_);
    }

    NodeId allocate(Op op) {
        NodeId id;
        if (!free_.empty()) {
            id = free_.back();
            free_.pop_back();
        } else {
            // ids above 2**31 would collide with constant entries and Operand::kNumber
            if (nodes_.size() >= kConstantEntry) throw std::bad_alloc();
            id = static_cast<NodeId>(nodes_.size());
            grow();
        }
        start_node(id, op);
        return id;
    }
    // A node new at a free id: no reference but the recording log's.
    void start_node(NodeId id, Op op) {
        grads_[id] = 0.0;  // (its value, and so its int mark, is set by the caller)
        Node& n = nodes_[id];
        n.refs = 0;
        n.stamp = 0;
        n.owner = nullptr;
        n.op = op;
        n.flags = 0;
        if (recording()) {
            log_->push_back(id);
            n.refs = 1;  // the log's reference
        }
    }
    void grow();  // one more node in every array, or in none (out of line: allocate() stays small)
    void set_param(NodeId id, Number p) {
        Node& n = nodes_[id];
        if (p.is_int) {
            n.param.i = p.i;
            n.flags |= kParamIsInt;
        } else {
            n.param.f = p.f;
        }
    }
    NodeId materialize(const Operand& o) { return o.is_node() ? o.node : leaf(o.number); }
    Number operand_value(const Operand& o) const { return o.is_node() ? value(o.node) : o.number; }
    uint32_t new_list();
    void sort_free_list();
    void free_unreferenced(NodeId id);
    void topological_order(NodeId root, bool zero = true);            // zero: the reached gradients
    void find_relevant(NodeId root, const NodeId* inputs, size_t n);  // (higher.cpp)
    bool reached(NodeId id) const { return nodes_[id].stamp == epoch_; }
    template <bool kRule>
    Status propagate(NodeId id);
    template <bool kRule>
    void propagate_term(NodeId id, uint32_t term);
    template <bool kRule>
    Status propagate_all(NodeId root);  // the eager pass over order_
    void zero_gradients();              // of the nodes in order_

    std::vector<Node> nodes_;
    std::vector<Slot> values_;
    std::vector<double> grads_;
    std::vector<uint8_t> ints_;  // 1: values_[id] holds an int
    std::vector<NodeId> free_;
    std::vector<ChildList> lists_;  // children of n-ary nodes
    std::vector<uint32_t> free_lists_;
    std::unordered_map<NodeId, std::string> labels_;
    std::unordered_map<NodeId, std::string> op_names_;
    uint32_t epoch_ = 0;
    // this thread's recording log, if it records; recorders_ counts the
    // threads that do, so that the common case tests a plain member
    static inline thread_local std::vector<NodeId>* log_ = nullptr;
    size_t recorders_ = 0;
    // scratch, kept between calls so that backward() allocates nothing once warm
    std::vector<Step> order_;
    struct Visit {  // a node on the depth-first search's stack
        NodeId node;
        uint32_t next;      // its next child to look at
        uint32_t count;     // how many children it has
        bool term_pending;  // a fused node's child has just been searched
    };
    std::vector<Visit> stack_;
    std::vector<NodeId> sinks_;  // (sinks())
    std::vector<NodeId> dying_;
    // the second-derivative sweeps' scratch (higher.cpp): each reached node's
    // index among order_'s nodes (valid while its stamp is epoch_), and per
    // index whether it is an input or leads to one through a child
    std::vector<uint32_t> local_;
    std::vector<uint8_t> leads_;
    struct Aside {  // a reached node's gradients, set aside while a sweep uses them
        double grad;
        double constant_grad;
    };
    std::vector<Aside> aside_;
    std::vector<double> aside_constants_;
    std::vector<uint64_t> free_bits_;  // sort_free_list's scratch
    size_t frees_since_sort_ = 0;      // ids pushed on free_ since sort_free_list (see leaf)
    static constexpr size_t kSortAfterFrees = size_t{1} << 16;
    std::unordered_map<NodeId, std::unique_ptr<Schedule>> schedules_;  // (keep_schedule)
    // Counts the changes to any graph's shape; a schedule made before the
    // last one is made again.  Starts at 1, so a fresh schedule is stale.
    uint64_t shape_ = 1;
    uint64_t int_writes_ = 0;  // (int_writes())
    // A backward pass on the hardware alone wrote a NaN into a constant's
    // gradient (set_constant_grad).
    bool nan_seen_ = false;
};

inline Status Graph::binary(Op op, Operand a, Operand b, NodeId* out) {
    Number r;
    Number x = operand_value(a), y = operand_value(b);
    Status s = with_binary(op, [&](auto entry) { return decltype(entry)::of_numbers(x, y, &r); });
    if (s != Status::Ok) return s;
    NodeId ca = materialize(a);  // the binding always puts a constant second
    NodeId id = allocate(op);
    Node& n = nodes_[id];
    n.child[0] = ca;
    ++nodes_[ca].refs;
    if (b.is_node()) {
        n.child[1] = b.node;
        ++nodes_[b.node].refs;
    } else {
        n.flags |= kInlineConstant;
        n.constant_grad = 0.0;
        set_param(id, b.number);
    }
    set_value(id, r);
    *out = id;
    return Status::Ok;
}

inline size_t Graph::child_count(NodeId id) const {
    const Node& n = nodes_[id];
    switch (n.op) {
        case Op::Leaf:
            return 0;
        case Op::Add:
        case Op::Mul:
            return (n.flags & kInlineConstant) ? 1 : 2;
        case Op::Sum:
        case Op::Dot:
        case Op::Custom:
            return lists_[n.child[0]].entries.size();
        default:
            return 1;
    }
}

inline NodeId Graph::child(NodeId id, size_t i) const {
    const Node& n = nodes_[id];
    return has_list(n.op) ? lists_[n.child[0]].entries[i] : n.child[i];
}

}  // namespace agrad
