// The Value type: made with CPython's type-spec API (PyType_FromSpec) and a
// layout of our own (ValueObject); its number slots, comparisons, data, grad,
// label, _prev and pickling are plain C functions (module.cpp says why).
#include "binding.hpp"  // (first: Python.h before structmember.h)

#include <structmember.h>  // PyMemberDef, T_PYSSIZET: __weaklistoffset__ for PyType_FromSpec

#include <cstddef>
#include <string>
#include <vector>

namespace agrad::binding {

PyTypeObject* value_type = nullptr;
PyObject* restore_leaf = nullptr;  // agrad._core._restore_leaf, for __reduce__

constexpr const char* kAlreadyMade =
    "Value.__init__ runs once: a Value is fixed once made; make a new Value instead";

// Recently freed Value objects, reused to skip the allocator on the hot path.
constexpr int kFreeListSize = 2048;
ValueObject* free_list[kFreeListSize];
int free_count = 0;

// -- Value objects
void bind(ValueObject* self, NodeId id) {
    self->node = id;
    self->initialized = false;
    self->weakrefs = nullptr;
    graph->set_owner(id, self);
    graph->retain(id);
}

// A new Python object for a node that has none.
PyObject* wrap_new(NodeId id) {
    ValueObject* self;
    if (free_count > 0) {
        self = free_list[--free_count];
    } else {
        self = static_cast<ValueObject*>(PyObject_Malloc(sizeof(ValueObject)));
        if (!self) {
            graph->retain(id);  // drop a node nobody will hold
            graph->release(id);
            return PyErr_NoMemory();
        }
    }
    PyObject_Init(reinterpret_cast<PyObject*>(self), value_type);
    bind(self, id);
    self->initialized = true;  // a result is made whole, never by __init__
    return reinterpret_cast<PyObject*>(self);
}

// The object that stands for a node: the one the user holds, if alive.  An
// owner whose count is zero is in the middle of being freed (a weakref
// callback or a subclass's dict being cleared is running): it gets a
// successor instead of being brought back half-freed.
PyObject* object_of(NodeId id) {
    if (void* owner = graph->owner(id)) {
        PyObject* o = static_cast<PyObject*>(owner);
        if (Py_REFCNT(o) > 0) {
            Py_INCREF(o);
            return o;
        }
    }
    return wrap_new(id);
}

PyObject* finish(Status s, NodeId id) { return s == Status::Ok ? wrap_new(id) : raise(s); }

void value_dealloc(PyObject* o) {
    ValueObject* self = as_value(o);
    const NodeId id = self->node;
    // The node forgets this object before weakref callbacks can ask for it.
    if (graph->owner(id) == self) graph->set_owner(id, nullptr);
    if (self->weakrefs) PyObject_ClearWeakRefs(o);
    graph->release(id);
    PyTypeObject* type = Py_TYPE(o);
    if (type == value_type && free_count < kFreeListSize) {
        free_list[free_count++] = self;
    } else {
        type->tp_free(o);
    }
    Py_DECREF(type);  // instances of heap types hold their type
}

PyObject* value_new(PyTypeObject* type, PyObject*, PyObject*) {
    // a leaf 0 until __init__ runs, so no object is ever without a node
    NodeId id = graph->leaf(Number::of_int(0));
    if (type == value_type) {
        PyObject* o = wrap_new(id);
        if (o) as_value(o)->initialized = false;
        return o;
    }
    PyObject* o = type->tp_alloc(type, 0);
    if (!o) {
        graph->retain(id);
        graph->release(id);
        return nullptr;
    }
    bind(as_value(o), id);
    return o;
}

// Value(data, _children=(), _op='', label='')
int value_init(PyObject* o, PyObject* args, PyObject* kwds) {
    static const char* keywords[] = {"data", "_children", "_op", "label", nullptr};
    PyObject* data = nullptr;
    PyObject* children = nullptr;
    PyObject* op = nullptr;
    PyObject* label = nullptr;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OOO:Value", const_cast<char**>(keywords), &data,
                                     &children, &op, &label))
        return -1;
    ValueObject* self = as_value(o);
    if (self->initialized) {
        PyErr_SetString(PyExc_TypeError, kAlreadyMade);
        return -1;
    }
    // Everything that can run Python code first.
    Number value;
    if (!require_number(data, &value)) return -1;
    std::string op_text, label_text;
    if (label && !(check_str(label, "label must be a str, not") && utf8_of(label, &label_text)))
        return -1;
    if (op && !(check_str(op, "_op must be a str, not") && utf8_of(op, &op_text))) return -1;
    PyObject* seq = nullptr;  // holds the children alive while their ids are in use
    if (children) {
        seq = PySequence_Fast(children, "_children must be an iterable of Values");
        if (!seq) return -1;
    }
    if (self->initialized) {  // the iterator's own code called __init__
        Py_XDECREF(seq);
        PyErr_SetString(PyExc_TypeError, kAlreadyMade);
        return -1;
    }
    // Then the ids, with no Python code in between.
    std::vector<NodeId> child_ids;
    Py_ssize_t n = seq ? PySequence_Fast_GET_SIZE(seq) : 0;
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject* c = PySequence_Fast_GET_ITEM(seq, i);
        if (!is_value(c)) {
            type_error_naming("_children must be Values, not", c);
            Py_DECREF(seq);
            return -1;
        }
        child_ids.push_back(node_of(c));
    }
    NodeId id = child_ids.empty() && op_text.empty()
                    ? graph->leaf(value)
                    : graph->custom(value, child_ids.data(), child_ids.size(), std::move(op_text));
    Py_XDECREF(seq);
    graph->set_label(id, std::move(label_text));
    // The object now stands for the new node instead of the placeholder leaf.
    NodeId placeholder = self->node;
    graph->set_owner(placeholder, nullptr);
    self->node = id;
    self->initialized = true;
    graph->set_owner(id, self);
    graph->retain(id);
    graph->release(placeholder);
    return 0;
}

// -- the number slots.  A slot gets its operands in source order, so in
// `2.5 * v` the float comes first; each is composed as the book composes it.
// The other operand is converted before any node id is read.

PyObject* apply_binary(Op op, Operand a, Operand b) {
    NodeId id;
    Status s = graph->binary(op, a, b, &id);
    return finish(s, id);
}

// self (op) other, where other may be anything
PyObject* binary_with(Op op, PyObject* self, PyObject* other) {
    Operand o;
    if (is_value(other)) {
        o = Operand::of_node(node_of(other));
    } else {
        Number n;
        int r = to_number(other, &n);
        if (r <= 0) return r == 0 ? not_implemented() : nullptr;
        o = Operand::of_number(n);
    }
    return apply_binary(op, Operand::of_node(node_of(self)), o);
}

PyObject* value_add(PyObject* a, PyObject* b) {
    return is_value(a) ? binary_with(Op::Add, a, b) : binary_with(Op::Add, b, a);
}

PyObject* value_multiply(PyObject* a, PyObject* b) {
    return is_value(a) ? binary_with(Op::Mul, a, b) : binary_with(Op::Mul, b, a);
}

// -v is v * -1; the node comes back with a reference the caller releases
Status negated(NodeId v, NodeId* out) {
    Status s = graph->binary(Op::Mul, Operand::of_node(v), Operand::of_number(Number::of_int(-1)),
                             out);
    if (s == Status::Ok) graph->retain(*out);
    return s;
}

// v ** -1, likewise with a reference the caller releases
Status inverted(NodeId v, NodeId* out) {
    Status s = graph->power(v, Number::of_int(-1), out);
    if (s == Status::Ok) graph->retain(*out);
    return s;
}

// a (op) b, where `first` came out of negated() or inverted()
PyObject* apply_then_release(Op op, NodeId first, Operand a, Operand b) {
    NodeId id;
    Status s = graph->binary(op, a, b, &id);
    PyObject* result = finish(s, id);
    graph->release(first);
    return result;
}

PyObject* value_negative(PyObject* a) {
    return apply_binary(Op::Mul, Operand::of_node(node_of(a)),
                        Operand::of_number(Number::of_int(-1)));
}

PyObject* value_subtract(PyObject* a, PyObject* b) {
    Number n;
    NodeId neg;
    if (is_value(a)) {
        if (is_value(b)) {  // a + (-b)
            Status s = negated(node_of(b), &neg);
            if (s != Status::Ok) return raise(s);
            return apply_then_release(Op::Add, neg, Operand::of_node(node_of(a)),
                                      Operand::of_node(neg));
        }
        int r = to_number(b, &n);  // a + (-b), -b negated as a number
        if (r <= 0) return r == 0 ? not_implemented() : nullptr;
        Status s = agrad::negate(n, &n);
        if (s != Status::Ok) return raise(s);
        return apply_binary(Op::Add, Operand::of_node(node_of(a)), Operand::of_number(n));
    }
    int r = to_number(a, &n);  // (-b) + a
    if (r <= 0) return r == 0 ? not_implemented() : nullptr;
    Status s = negated(node_of(b), &neg);
    if (s != Status::Ok) return raise(s);
    return apply_then_release(Op::Add, neg, Operand::of_node(neg), Operand::of_number(n));
}

PyObject* value_true_divide(PyObject* a, PyObject* b) {
    Number n;
    NodeId inv;
    if (is_value(a)) {
        if (is_value(b)) {  // a * b**-1
            Status s = inverted(node_of(b), &inv);
            if (s != Status::Ok) return raise(s);
            return apply_then_release(Op::Mul, inv, Operand::of_node(node_of(a)),
                                      Operand::of_node(inv));
        }
        int r = to_number(b, &n);  // a * (b ** -1), b ** -1 computed as a number
        if (r <= 0) return r == 0 ? not_implemented() : nullptr;
        Status s = agrad::power(n, Number::of_int(-1), &n);
        if (s != Status::Ok) return raise(s);
        return apply_binary(Op::Mul, Operand::of_node(node_of(a)), Operand::of_number(n));
    }
    int r = to_number(a, &n);  // b**-1 * a
    if (r <= 0) return r == 0 ? not_implemented() : nullptr;
    Status s = inverted(node_of(b), &inv);
    if (s != Status::Ok) return raise(s);
    return apply_then_release(Op::Mul, inv, Operand::of_node(inv), Operand::of_number(n));
}

PyObject* value_power(PyObject* a, PyObject* b, PyObject* modulo) {
    // only Value ** number: a Value exponent or a modulus is a TypeError
    if (modulo != Py_None || !is_value(a) || is_value(b)) return not_implemented();
    Number k;
    int r = to_number(b, &k);
    if (r <= 0) return r == 0 ? not_implemented() : nullptr;
    NodeId id;
    Status s = graph->power(node_of(a), k, &id);
    return finish(s, id);
}

// -- comparisons: <, <=, >, >= order the data as Python orders numbers, and
// give a plain bool.  == and != stay identity (NotImplemented here makes
// Python compare identities), and so does the hash: the set of children
// (_prev) relies on both.  While a thread records, the outcome is kept as a
// guard of the program, checked at every replay.

PyObject* value_richcompare(PyObject* a, PyObject* b, int op) {
    Comparison c;
    switch (op) {
        case Py_LT:
            c = Comparison::Less;
            break;
        case Py_LE:
            c = Comparison::LessEqual;
            break;
        case Py_GT:
            c = Comparison::Greater;
            break;
        case Py_GE:
            c = Comparison::GreaterEqual;
            break;
        default:  // == and != are identity; against a number, inside a recording, a trap
            if (graph->recording() && !is_value(b)) {
                Number n;  // only a number is refused: `v == "a"` or `v == None` stays False
                int r = to_number(b, &n);
                if (r < 0 || (r == 1 && refused_while_recording(Access::EqualsNumber)))
                    return nullptr;
            }
            return not_implemented();
    }
    if (!is_value(a)) return not_implemented();  // never: Python calls the Value's side
    Operand other;
    if (!is_value(b)) {
        Number n;
        int r = to_number(b, &n);  // (may run Python code: node ids are read after)
        if (r <= 0) return r == 0 ? not_implemented() : nullptr;
        other = Operand::of_number(n);
    } else {
        other = Operand::of_node(node_of(b));
    }
    const NodeId left = node_of(a);
    const Number right = other.is_node() ? graph->value(other.node) : other.number;
    const bool outcome = agrad::holds(c, agrad::order(graph->value(left), right));
    if (graph->recording()) record_guard(c, left, other, outcome);
    return PyBool_FromLong(outcome);
}

// bool(v) is true, as for any object; while recording it is refused, since
// eager code given the plain number (a flag of 0) would decide otherwise.
int value_bool(PyObject*) { return refused_while_recording(Access::Truth) ? -1 : 1; }

// object.__hash__'s hash of the address, which a type that defines
// comparisons must name itself (it would otherwise be unhashable).
Py_hash_t value_hash(PyObject* self) {
    auto bits = reinterpret_cast<size_t>(self);
    bits = (bits >> 4) | (bits << (8 * sizeof(void*) - 4));  // the low bits are alignment
    auto h = static_cast<Py_hash_t>(bits);
    return h == -1 ? -2 : h;
}

PyObject* unary(PyObject* self, Op op) {
    NodeId id;
    Status s = graph->unary(op, node_of(self), &id);
    return finish(s, id);
}

// The Value method of each entry of the table of operations (ops.hpp).
template <Op op>
PyObject* unary_method(PyObject* self, PyObject*) {
    return unary(self, op);
}

PyObject* backward(PyObject* self, PyObject*) {
    if (refused_while_recording(Access::Backward)) return nullptr;
    Status s = graph->backward(node_of(self));
    if (s != Status::Ok) return raise(s);
    Py_RETURN_NONE;
}

// -- data, grad and label.  A training loop reads and writes them for every
// parameter on every step, so they are a C getset, not pybind11 properties.

PyObject* get_data(PyObject* self, void*) {
    if (refused_while_recording(Access::ReadData)) return nullptr;
    return number_to_python(graph->value(node_of(self)));
}

// The number a setter is given; deleting the attribute is an error.
bool number_to_set(PyObject* v, const char* attribute, Number* out) {
    if (!v) {
        PyErr_Format(PyExc_AttributeError, "can't delete attribute '%s'", attribute);
        return false;
    }
    return require_number(v, out);
}

int set_data(PyObject* self, PyObject* v, void*) {
    Number n;
    if (refused_while_recording(Access::WriteData) || !number_to_set(v, "data", &n)) return -1;
    graph->set_value(node_of(self), n);
    return 0;
}

PyObject* get_grad(PyObject* self, void*) {
    if (refused_while_recording(Access::ReadGrad)) return nullptr;
    return PyFloat_FromDouble(graph->grad(node_of(self)));
}

int set_grad(PyObject* self, PyObject* v, void*) {
    Number n;
    if (refused_while_recording(Access::WriteGrad) || !number_to_set(v, "grad", &n)) return -1;
    graph->set_grad(node_of(self), n.as_double());
    return 0;
}

PyObject* get_label(PyObject* self, void*) { return str_of(graph->label(node_of(self))); }

int set_label(PyObject* self, PyObject* v, void*) {
    if (!v) {
        PyErr_SetString(PyExc_AttributeError, "can't delete attribute 'label'");
        return -1;
    }
    std::string text;
    if (!check_str(v, "label must be a str, not") || !utf8_of(v, &text)) return -1;
    graph->set_label(node_of(self), std::move(text));
    return 0;
}

PyObject* get_op(PyObject* self, void*) {
    NodeId id = node_of(self);
    switch (graph->op(id)) {
        case Op::Leaf:
            return PyUnicode_FromString("");
        case Op::Add:
            return PyUnicode_FromString(agrad::ops::Add::text);
        case Op::Mul:
            return PyUnicode_FromString(agrad::ops::Mul::text);
        case Op::Pow: {  // "**k", k as str() prints it, as the pure engine's f-string
            PyObject* k = number_to_python(graph->param(id));
            if (!k) return nullptr;
            PyObject* text = PyUnicode_FromFormat("**%S", k);
            Py_DECREF(k);
            return text;
        }
        case Op::Sum:
            return PyUnicode_FromString("sum");
        case Op::Dot:
            return PyUnicode_FromString("dot");
        case Op::Custom:
            return str_of(graph->op_name(id));
        default:  // the table's entries (ops.hpp)
            return PyUnicode_FromString(agrad::unary_op_text(graph->op(id)));
    }
}

// The children's objects, in order.  The tuple is made before any object:
// making it may run the garbage collector, and so Python code; after that
// only wrap_new runs, which runs none.  The children stay alive throughout,
// held by this node, which `self` holds.
PyObject* get_children(PyObject* self, void*) {
    NodeId id = node_of(self);
    graph->materialize_constants(id);
    size_t n = graph->child_count(id);
    PyObject* out = PyTuple_New(static_cast<Py_ssize_t>(n));
    if (!out) return nullptr;
    for (size_t i = 0; i < n; ++i) {
        PyObject* child = object_of(graph->child(id, i));
        if (!child) {
            Py_DECREF(out);
            return nullptr;
        }
        PyTuple_SET_ITEM(out, static_cast<Py_ssize_t>(i), child);
    }
    return out;
}

PyObject* get_prev(PyObject* self, void*) {
    PyObject* children = get_children(self, nullptr);
    if (!children) return nullptr;
    PyObject* out = PySet_New(children);
    Py_DECREF(children);
    return out;
}

PyObject* value_repr(PyObject* self) {
    if (refused_while_recording(Access::Print)) return nullptr;
    NodeId id = node_of(self);
    PyObject* label = str_of(graph->label(id));
    if (!label) return nullptr;
    PyObject* data = number_to_python(graph->value(id));
    PyObject* text = data ? PyUnicode_FromFormat("Value(%U: %R)", label, data) : nullptr;
    Py_DECREF(label);
    Py_XDECREF(data);
    return text;
}

// A Value pickles as a leaf: data, grad and label, not its graph.
PyObject* value_reduce(PyObject* self, PyObject*) {
    if (refused_while_recording(Access::Copy)) return nullptr;
    NodeId id = node_of(self);
    PyObject* data = number_to_python(graph->value(id));
    PyObject* label = str_of(graph->label(id));
    PyObject* out = nullptr;
    if (data && label) out = Py_BuildValue("(O(OdO))", restore_leaf, data, graph->grad(id), label);
    Py_XDECREF(data);
    Py_XDECREF(label);
    return out;
}

PyGetSetDef value_getset[] = {
    {"data", getter<get_data>, setter<set_data>, "The number this Value holds: an int or a float.",
     nullptr},
    {"grad", getter<get_grad>, setter<set_grad>,
     "d(root)/d(this), set by the last backward(); a float.", nullptr},
    {"label", getter<get_label>, setter<set_label>, "A name, for printing and drawing.", nullptr},
    {"_op", getter<get_op>, nullptr, "The operation that made this Value ('' for a leaf).",
     nullptr},
    {"_children", getter<get_children>, nullptr, "The Values this one was computed from, in order.",
     nullptr},
    {"_prev", getter<get_prev>, nullptr, "The set of the Values this one was computed from.",
     nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMethodDef value_methods[] = {
#define AGRAD_METHOD(name, method_name, text, doc)             \
    {method_name, method<unary_method<Op::name>>, METH_NOARGS, \
     method_name "($self, /)\n--\n\n" doc},
    AGRAD_UNARY_OPS(AGRAD_METHOD)  // one method an entry of the table of operations (ops.hpp)
#undef AGRAD_METHOD
    {"backward", method<backward>, METH_NOARGS,
     "backward($self, /)\n--\n\nSet the gradient of every node of this graph: 0, this node's 1, "
     "then the chain rule in reverse topological order."},
    {"__reduce__", method<value_reduce>, METH_NOARGS,
     "__reduce__($self, /)\n--\n\nA Value pickles as a leaf: data, grad and label."},
    {nullptr, nullptr, 0, nullptr},
};

PyMemberDef value_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(ValueObject, weakrefs), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

using BinarySlot = PyObject* (*)(PyObject*, PyObject*);
template <auto F>
constexpr BinarySlot binary_slot = no_throw<F, PyObject*, PyObject*>;

template <class F>
void* slot(F f) {
    return reinterpret_cast<void*>(f);
}

PyType_Slot value_slots[] = {
    {Py_tp_doc, const_cast<char*>(
                    "Value(data, _children=(), _op='', label='')\n--\n\n"
                    "A scalar that remembers how it was computed, so it can be differentiated.\n\n"
                    ">>> from agrad import Value\n"
                    ">>> x = Value(3.0, label='x')\n"
                    ">>> y = x * x + 1\n"
                    ">>> y.backward()\n"
                    ">>> y, x.grad\n"
                    "(Value(: 10.0), 6.0)\n"
                    ">>> Value(10) * 10 + 3\n"
                    "Value(: 103)\n")},
    {Py_tp_new, slot(no_throw<value_new, PyTypeObject*, PyObject*, PyObject*>)},
    {Py_tp_init, slot(no_throw<value_init, PyObject*, PyObject*, PyObject*>)},
    {Py_tp_dealloc, slot(no_throw_void<value_dealloc, PyObject*>)},
    {Py_tp_repr, slot(no_throw<value_repr, PyObject*>)},
    {Py_tp_hash, slot(value_hash)},
    {Py_tp_richcompare, slot(no_throw<value_richcompare, PyObject*, PyObject*, int>)},
    {Py_tp_getset, value_getset},
    {Py_tp_methods, value_methods},
    {Py_tp_members, value_members},
    {Py_nb_add, slot(binary_slot<value_add>)},
    {Py_nb_subtract, slot(binary_slot<value_subtract>)},
    {Py_nb_multiply, slot(binary_slot<value_multiply>)},
    {Py_nb_true_divide, slot(binary_slot<value_true_divide>)},
    {Py_nb_power, slot(no_throw<value_power, PyObject*, PyObject*, PyObject*>)},
    {Py_nb_negative, slot(no_throw<value_negative, PyObject*>)},
    {Py_nb_bool, slot(no_throw<value_bool, PyObject*>)},
    {0, nullptr},
};

// The dotted name gives the type its __module__.
PyType_Spec value_spec = {
    "agrad._core.Value",
    static_cast<int>(sizeof(ValueObject)),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    value_slots,
};

py::object make_leaf(py::handle data, py::handle grad, py::handle label) {
    py::object v = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(value_type))(
        data, py::arg("label") = label);
    v.attr("grad") = grad;
    return v;
}

// Every number converted first (a TypeError leaves the arena as it was),
// then the leaves made at once.
py::list make_leaves(py::handle data) {
    py::sequence items = py::reinterpret_borrow<py::sequence>(
        steal_or_throw(PySequence_Fast(data.ptr(), "_leaves takes a sequence of numbers")));
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(items.ptr());
    std::vector<Number> values(static_cast<size_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i)
        if (!require_number(PySequence_Fast_GET_ITEM(items.ptr(), i), &values[i]))
            throw py::error_already_set();
    py::list out(n);
    if (n == 0) return out;
    const NodeId first = graph->leaves(values.data(), values.size());
    for (Py_ssize_t i = 0; i < n; ++i) {
        // a leaf nobody holds is freed: the list's objects hold them
        PyObject* o = wrap_new(static_cast<NodeId>(first + i));
        if (!o) {                                     // (wrap_new dropped leaf i)
            for (Py_ssize_t j = i + 1; j < n; ++j) {  // those without an object yet
                graph->retain(static_cast<NodeId>(first + j));
                graph->release(static_cast<NodeId>(first + j));
            }
            throw py::error_already_set();
        }
        PyList_SET_ITEM(out.ptr(), i, o);
    }
    return out;
}

NodeId node_of_value(py::handle o, const char* what) {
    if (!is_value(o.ptr())) {
        type_error_naming(what, o.ptr());
        throw py::error_already_set();
    }
    return node_of(o.ptr());
}

void register_value(py::module_& m) {
    if (!value_type) {  // once per process: a second import gets the same type
        PyObject* type = PyType_FromSpec(&value_spec);
        if (!type) throw py::error_already_set();
        value_type = reinterpret_cast<PyTypeObject*>(type);
        // numpy must hand `np.float64(2) * v` back to Value's slots, not make an array
        if (PyObject_SetAttrString(type, "__array_ufunc__", Py_None) < 0)
            throw py::error_already_set();
    }
    py::object type = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(value_type));
    m.attr("Value") = type;

    m.def("_restore_leaf", &make_leaf, py::arg("data"), py::arg("grad"), py::arg("label"),
          "A leaf with this data, grad and label: how a pickled Value comes back.");
    m.def("_leaves", &make_leaves, py::arg("data"),
          "Leaves holding these numbers, at consecutive ids of the arena (agrad.nn's weights).");
    if (!restore_leaf) restore_leaf = py::object(m.attr("_restore_leaf")).release().ptr();
}

}  // namespace agrad::binding
