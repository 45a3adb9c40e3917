// agrad._core: the Python face of the engine in cpp/.
//
// `Value` is a pybind11 class, but its arithmetic does not go through
// pybind11's dispatcher: that costs ~270 ns for Value*Value and over 1 us for
// Value*float (failed overload conversions).  Instead the type's number slots
// (nb_add, nb_multiply, ...) are plain C functions set by py::custom_type_setup,
// and results are allocated here, with the engine's node id stored inside the
// Python object itself, so an operation is a few tens of nanoseconds.
//
// The object layout is pybind11's `instance` followed by a ValueHandle.  The
// instance's value pointer points at that handle, so pybind11's own casters
// still see a valid object; but every Value is made and destroyed here, never
// by pybind11 (no registration in pybind11's instance map, no holder).
//
// A Value object holds one reference to its node; the node knows its object
// (`owner`) so that `_prev` hands back the very objects the user holds.
// Children that have no object any more (a constant in `w * 2.5`, an
// intermediate result that was dropped) get one made on request.
//
// The engine is shared by every thread of the process and is only touched
// with the GIL held; no Python code runs while a node is being changed.
#include <pybind11/pybind11.h>

#include <cerrno>
#include <new>
#include <type_traits>
#include <string>
#include <vector>

#include "agrad/graph.hpp"

namespace py = pybind11;
using agrad::Graph;
using agrad::NodeId;
using agrad::Number;
using agrad::Op;
using agrad::Operand;
using agrad::Status;

namespace {

struct ValueHandle {
    NodeId node;
};

struct ValueObject {
    py::detail::instance base;
    ValueHandle handle;
};

// Never destroyed: Values may outlive the module during interpreter shutdown.
Graph* graph = nullptr;
PyTypeObject* value_type = nullptr;
PyObject* integral_abc = nullptr;  // numbers.Integral
PyObject* real_abc = nullptr;      // numbers.Real

constexpr const char* kIntRange = "integer result out of agrad's 64-bit range; use a float";

// Recently freed Value objects, reused to skip the allocator on the hot path.
constexpr int kFreeListSize = 2048;
ValueObject* free_list[kFreeListSize];
int free_count = 0;

inline bool is_value(PyObject* o) {
    PyTypeObject* t = Py_TYPE(o);
    if (t == value_type) return true;
    // the other operand is most often a plain float or int: spare it the MRO walk
    if (t == &PyFloat_Type || t == &PyLong_Type) return false;
    return PyType_IsSubtype(t, value_type);
}

inline NodeId node_of(PyObject* o) { return reinterpret_cast<ValueObject*>(o)->handle.node; }

// -- errors: the exception Python raises for the same arithmetic on floats
PyObject* raise(Status s) {
    switch (s) {
        case Status::Ok:
            break;
        case Status::IntOverflow:
            PyErr_SetString(PyExc_OverflowError, kIntRange);
            break;
        case Status::PowRange:
            errno = ERANGE;
            PyErr_SetFromErrno(PyExc_OverflowError);
            break;
        case Status::ZeroToNegative:
            PyErr_SetString(PyExc_ZeroDivisionError, "0.0 cannot be raised to a negative power");
            break;
        case Status::FractionalOfNegative:
            PyErr_SetString(PyExc_ValueError,
                            "negative number cannot be raised to a fractional power");
            break;
        case Status::MathRange:
            PyErr_SetString(PyExc_OverflowError, "math range error");
            break;
        case Status::MathDomain:
            PyErr_SetString(PyExc_ValueError, "math domain error");
            break;
        case Status::FloatDivisionByZero:
            PyErr_SetString(PyExc_ZeroDivisionError, "float division by zero");
            break;
    }
    return nullptr;
}

// -- numbers in: 1 converted, 0 not a real number (NotImplemented), -1 error set.
// The rules of agrad.pure.as_number: int and bool and numbers.Integral become
// 64-bit ints, float and numbers.Real become doubles.
int int_from_pylong(PyObject* o, Number* out) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, kIntRange);
        return -1;
    }
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = Number::of_int(v);
    return 1;
}

int to_number(PyObject* o, Number* out) {
    if (PyFloat_CheckExact(o)) {
        *out = Number::of_float(PyFloat_AS_DOUBLE(o));
        return 1;
    }
    if (PyLong_CheckExact(o) || PyBool_Check(o)) return int_from_pylong(o, out);
    int integral = PyObject_IsInstance(o, integral_abc);
    if (integral < 0) return -1;
    if (integral) {
        PyObject* index = PyNumber_Index(o);
        if (!index) return -1;
        int r = int_from_pylong(index, out);
        Py_DECREF(index);
        return r;
    }
    int real = PyObject_IsInstance(o, real_abc);
    if (real < 0) return -1;
    if (real) {
        double d = PyFloat_AsDouble(o);
        if (d == -1.0 && PyErr_Occurred()) return -1;
        *out = Number::of_float(d);
        return 1;
    }
    return 0;
}

// The same, for places where anything but a number is a TypeError.
bool require_number(PyObject* o, Number* out) {
    int r = to_number(o, out);
    if (r == 0)
        PyErr_Format(PyExc_TypeError, "a Value holds a real number, not '%.200s'",
                     Py_TYPE(o)->tp_name);
    return r == 1;
}

int to_operand(PyObject* o, Operand* out) {
    if (is_value(o)) {
        *out = Operand::of_node(node_of(o));
        return 1;
    }
    Number n;
    int r = to_number(o, &n);
    if (r == 1) *out = Operand::of_number(n);
    return r;
}

PyObject* number_to_python(Number n) {
    return n.is_int ? PyLong_FromLongLong(n.i) : PyFloat_FromDouble(n.f);
}

// -- Value objects
void init_object(ValueObject* self, NodeId id) {
    py::detail::instance& inst = self->base;
    inst.simple_value_holder[0] = &self->handle;
    for (size_t i = 1; i < sizeof(inst.simple_value_holder) / sizeof(void*); ++i)
        inst.simple_value_holder[i] = nullptr;
    inst.weakrefs = nullptr;
    inst.owned = true;
    inst.simple_layout = true;
    inst.simple_holder_constructed = true;  // pybind11's metaclass checks __init__ ran
    inst.simple_instance_registered = false;
    inst.has_patients = false;
    inst.is_alias = false;
    self->handle.node = id;
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
    init_object(self, id);
    return reinterpret_cast<PyObject*>(self);
}

// The object that stands for a node: the one the user holds, if alive.
PyObject* object_of(NodeId id) {
    if (void* owner = graph->owner(id)) {
        PyObject* o = static_cast<PyObject*>(owner);
        Py_INCREF(o);
        return o;
    }
    return wrap_new(id);
}

PyObject* finish(Status s, NodeId id) { return s == Status::Ok ? wrap_new(id) : raise(s); }

void value_dealloc(PyObject* o) {
    auto* self = reinterpret_cast<ValueObject*>(o);
    if (self->base.weakrefs) PyObject_ClearWeakRefs(o);
    NodeId id = self->handle.node;
    graph->set_owner(id, nullptr);
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
    if (type == value_type) return wrap_new(id);
    PyObject* o = type->tp_alloc(type, 0);
    if (!o) {
        graph->retain(id);
        graph->release(id);
        return nullptr;
    }
    init_object(reinterpret_cast<ValueObject*>(o), id);
    return o;
}

// Points the object at another node, dropping its old one.
void rebind(PyObject* o, NodeId id) {
    auto* self = reinterpret_cast<ValueObject*>(o);
    NodeId old = self->handle.node;
    graph->set_owner(old, nullptr);
    self->handle.node = id;
    graph->set_owner(id, self);
    graph->retain(id);
    graph->release(old);
}

bool check_str(PyObject* o, const char* what) {
    if (PyUnicode_Check(o)) return true;
    PyErr_Format(PyExc_TypeError, "%s must be a str, not '%.200s'", what, Py_TYPE(o)->tp_name);
    return false;
}

// Value(data, _children=(), _op='', label='')
int value_init(PyObject* self, PyObject* args, PyObject* kwds) {
    static const char* keywords[] = {"data", "_children", "_op", "label", nullptr};
    PyObject* data = nullptr;
    PyObject* children = nullptr;
    PyObject* op = nullptr;
    PyObject* label = nullptr;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OOO:Value", const_cast<char**>(keywords),
                                     &data, &children, &op, &label))
        return -1;
    Number value;
    if (!require_number(data, &value)) return -1;
    if (label && !check_str(label, "label")) return -1;
    if (op && !check_str(op, "_op")) return -1;
    std::vector<NodeId> child_ids;
    if (children) {
        PyObject* seq = PySequence_Fast(children, "_children must be an iterable of Values");
        if (!seq) return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        for (Py_ssize_t i = 0; i < n; ++i) {
            PyObject* c = PySequence_Fast_GET_ITEM(seq, i);
            if (!is_value(c)) {
                PyErr_Format(PyExc_TypeError, "_children must be Values, not '%.200s'",
                             Py_TYPE(c)->tp_name);
                Py_DECREF(seq);
                return -1;
            }
            child_ids.push_back(node_of(c));
        }
        Py_DECREF(seq);
    }
    std::string op_text = op ? PyUnicode_AsUTF8(op) : "";
    const char* label_text = label ? PyUnicode_AsUTF8(label) : "";
    if (!label_text) return -1;
    NodeId id;
    if (child_ids.empty() && op_text.empty()) {
        id = graph->leaf(value);
    } else {
        id = graph->custom(value, child_ids.data(), child_ids.size(), op_text);
    }
    rebind(self, id);
    graph->set_label(id, label_text);
    return 0;
}

// -- the number slots.  A slot gets its operands in source order, so in
// `2.5 * v` the float comes first; each is composed as the book composes it.
PyObject* not_implemented() { Py_RETURN_NOTIMPLEMENTED; }

PyObject* apply_binary(Op op, Operand a, Operand b) {
    NodeId id;
    Status s = graph->binary(op, a, b, &id);
    return finish(s, id);
}

// self (op) other, where other may be anything
PyObject* binary_with(Op op, PyObject* self, PyObject* other) {
    Operand o;
    int r = to_operand(other, &o);
    if (r <= 0) return r == 0 ? not_implemented() : nullptr;
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

// -- everything else is ordinary pybind11
NodeId checked_node(py::handle self) {
    if (!is_value(self.ptr())) throw py::type_error("expected an agrad Value");
    return node_of(self.ptr());
}

py::object steal_or_throw(PyObject* o) {
    if (!o) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(o);
}

py::object unary(py::handle self, Op op) {
    NodeId id;
    Status s = graph->unary(op, checked_node(self), &id);
    return steal_or_throw(finish(s, id));
}

py::str op_text(NodeId id) {
    switch (graph->op(id)) {
        case Op::Leaf:
            return py::str("");
        case Op::Add:
            return py::str("+");
        case Op::Mul:
            return py::str("*");
        case Op::Pow: {
            py::object k = steal_or_throw(number_to_python(graph->param(id)));
            return py::str("**") + py::str(k);
        }
        case Op::Exp:
            return py::str("exp");
        case Op::Log:
            return py::str("log");
        case Op::Tanh:
            return py::str("tanh");
        case Op::Relu:
            return py::str("ReLU");
        case Op::Sigmoid:
            return py::str("sigmoid");
        case Op::Sum:
            return py::str("sum");
        case Op::Dot:
            return py::str("dot");
        case Op::Custom:
            return py::str(graph->op_name(id));
    }
    return py::str("");
}

// The children's objects, in order.  Ids are copied first: making an object
// can run arbitrary Python code (the garbage collector), which may add or
// free nodes.
py::tuple children_of(py::handle self) {
    NodeId id = checked_node(self);
    graph->materialize_constants(id);
    std::vector<NodeId> ids(graph->child_count(id));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = graph->child(id, i);
    py::tuple out(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) out[i] = steal_or_throw(object_of(ids[i]));
    return out;
}

py::object make_leaf(py::handle data, py::handle grad, py::handle label) {
    py::object v = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(value_type))(
        data, py::arg("label") = label);
    v.attr("grad") = grad;
    return v;
}

// Operands of agrad.sum / agrad.dot: Values and numbers, anything else is
// the TypeError `+` or `*` would raise.
std::vector<Operand> operands(py::handle iterable, const char* op) {
    std::vector<Operand> out;
    for (py::handle item : iterable) {
        Operand o;
        int r = to_operand(item.ptr(), &o);
        if (r < 0) throw py::error_already_set();
        if (r == 0)
            throw py::type_error(std::string("unsupported operand type(s) for ") + op +
                                 ": 'Value' and '" + Py_TYPE(item.ptr())->tp_name + "'");
        out.push_back(o);
    }
    return out;
}

py::object fused_sum(py::iterable values, py::handle start) {
    py::list items(values);
    Number s;
    if (!require_number(start.ptr(), &s)) throw py::error_already_set();
    std::vector<Operand> terms = operands(items, "+");
    bool any_value = false;
    for (const Operand& t : terms) any_value |= t.is_node();
    if (!any_value)  // no Value at all: what the builtin would give
        return py::module_::import("builtins").attr("sum")(items, start);
    NodeId id;
    Status st = graph->sum(terms.data(), terms.size(), s, &id);
    return steal_or_throw(finish(st, id));
}

py::object fused_dot(py::iterable weights, py::iterable inputs) {
    std::vector<Operand> w = operands(py::list(weights), "*");
    std::vector<Operand> x = operands(py::list(inputs), "*");
    if (w.size() != x.size())
        throw py::value_error("dot: weights and inputs differ in length (" +
                              std::to_string(w.size()) + " and " + std::to_string(x.size()) +
                              ")");
    bool any_value = false;
    for (size_t i = 0; i < w.size(); ++i) any_value |= w[i].is_node() || x[i].is_node();
    if (!any_value) {
        py::object builtins = py::module_::import("builtins");
        py::object products = py::module_::import("operator").attr("mul");
        return builtins.attr("sum")(builtins.attr("map")(products, weights, inputs));
    }
    NodeId id;
    Status st = graph->dot(w.data(), x.data(), w.size(), &id);
    return steal_or_throw(finish(st, id));
}

// -- data, grad, label and backward() are C-level too: a training loop reads
// and writes them for every parameter on every step, and a pybind11 property
// costs ~130 ns a read against ~25 ns here.
PyObject* get_data(PyObject* self, void*) { return number_to_python(graph->value(node_of(self))); }

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
    if (!number_to_set(v, "data", &n)) return -1;
    graph->set_value(node_of(self), n);
    return 0;
}

PyObject* get_grad(PyObject* self, void*) { return PyFloat_FromDouble(graph->grad(node_of(self))); }

int set_grad(PyObject* self, PyObject* v, void*) {
    Number n;
    if (!number_to_set(v, "grad", &n)) return -1;
    graph->set_grad(node_of(self), n.as_double());
    return 0;
}

PyObject* get_label(PyObject* self, void*) {
    const std::string& label = graph->label(node_of(self));
    return PyUnicode_FromStringAndSize(label.data(), static_cast<Py_ssize_t>(label.size()));
}

int set_label(PyObject* self, PyObject* v, void*) {
    if (!v) {
        PyErr_SetString(PyExc_AttributeError, "can't delete attribute 'label'");
        return -1;
    }
    if (!check_str(v, "label")) return -1;
    Py_ssize_t size;
    const char* text = PyUnicode_AsUTF8AndSize(v, &size);
    if (!text) return -1;
    graph->set_label(node_of(self), std::string(text, static_cast<size_t>(size)));
    return 0;
}

PyObject* backward(PyObject* self, PyObject*) {
    Status s = graph->backward(node_of(self));
    if (s != Status::Ok) return raise(s);
    Py_RETURN_NONE;
}

// No C++ exception may cross into CPython: the engine's only one is
// std::bad_alloc (memory exhausted), which becomes MemoryError.
template <auto F, class... Args>
auto no_throw(Args... args) noexcept -> decltype(F(args...)) {
    try {
        return F(args...);
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
        if constexpr (std::is_pointer_v<decltype(F(args...))>)
            return nullptr;
        else
            return -1;
    }
}

PyGetSetDef value_getset[] = {
    {"data", get_data, set_data, "The number this Value holds: an int or a float.", nullptr},
    {"grad", get_grad, set_grad, "d(root)/d(this), set by the last backward(); a float.",
     nullptr},
    {"label", get_label, no_throw<set_label, PyObject*, PyObject*, void*>, "A name, for printing and drawing.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMethodDef value_methods[] = {
    {"backward", no_throw<backward, PyObject*, PyObject*>, METH_NOARGS,
     "Set the gradient of every node of this graph: 0, this node's 1, then the chain rule in "
     "reverse topological order."},
    {nullptr, nullptr, 0, nullptr},
};

void setup_type(PyHeapTypeObject* heap_type) {
    PyTypeObject* type = &heap_type->ht_type;
    type->tp_basicsize = sizeof(ValueObject);
    type->tp_new = no_throw<value_new, PyTypeObject*, PyObject*, PyObject*>;
    type->tp_init = no_throw<value_init, PyObject*, PyObject*, PyObject*>;
    type->tp_dealloc = value_dealloc;
    type->tp_getset = value_getset;
    type->tp_methods = value_methods;
    PyNumberMethods* nb = &heap_type->as_number;
    nb->nb_add = no_throw<value_add, PyObject*, PyObject*>;
    nb->nb_subtract = no_throw<value_subtract, PyObject*, PyObject*>;
    nb->nb_multiply = no_throw<value_multiply, PyObject*, PyObject*>;
    nb->nb_true_divide = no_throw<value_true_divide, PyObject*, PyObject*>;
    nb->nb_power = no_throw<value_power, PyObject*, PyObject*, PyObject*>;
    nb->nb_negative = no_throw<value_negative, PyObject*>;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "agrad's compiled engine: Value, and fused sum and dot";
    graph = new Graph();
    py::module_ numbers = py::module_::import("numbers");
    integral_abc = py::object(numbers.attr("Integral")).release().ptr();
    real_abc = py::object(numbers.attr("Real")).release().ptr();

    py::class_<ValueHandle> cls(m, "Value", py::custom_type_setup(setup_type),
                                "A scalar that remembers how it was computed, so it can be "
                                "differentiated.\n\nValue(data, _children=(), _op='', label='')");
    value_type = reinterpret_cast<PyTypeObject*>(cls.ptr());

    cls.def_property_readonly("_op", [](py::handle self) { return op_text(checked_node(self)); })
        .def_property_readonly("_children", &children_of)
        .def_property_readonly("_prev",
                               [](py::handle self) { return py::set(children_of(self)); })
        .def("exp", [](py::handle self) { return unary(self, Op::Exp); })
        .def("log", [](py::handle self) { return unary(self, Op::Log); })
        .def("tanh", [](py::handle self) { return unary(self, Op::Tanh); })
        .def("relu", [](py::handle self) { return unary(self, Op::Relu); })
        .def("sigmoid", [](py::handle self) { return unary(self, Op::Sigmoid); })
        .def("__repr__",
             [](py::handle self) {
                 NodeId id = checked_node(self);
                 py::object data = steal_or_throw(number_to_python(graph->value(id)));
                 return "Value(" + graph->label(id) + ": " + py::repr(data).cast<std::string>() +
                        ")";
             })
        .def("__reduce__", [](py::handle self) -> py::tuple {
            // a Value pickles as a leaf: data, grad and label, not its graph
            NodeId id = checked_node(self);
            return py::make_tuple(
                py::module_::import("agrad._core").attr("_restore_leaf"),
                py::make_tuple(steal_or_throw(number_to_python(graph->value(id))),
                               graph->grad(id), graph->label(id)));
        });
    // numpy must hand `np.float64(2) * v` back to Value's slots, not make an array
    cls.attr("__array_ufunc__") = py::none();

    m.def("_restore_leaf", &make_leaf);
    m.def("sum", &fused_sum, py::arg("values"), py::arg("start") = 0,
          "start + v0 + v1 + ... as one node: the data and gradients of the builtin "
          "sum's chain of additions, without the chain.");
    m.def("dot", &fused_dot, py::arg("weights"), py::arg("inputs"),
          "w0*x0 + w1*x1 + ... as one node: the data and gradients of "
          "sum(w * x for w, x in zip(weights, inputs)), without the chain.");
    m.def("_live_nodes", [] { return graph->live_nodes(); },
          "How many nodes the engine holds now (for tests and benchmarks).");
    m.def("_node_bytes", [] { return Graph::node_bytes(); },
          "The size of one node in the engine's arena.");
}
