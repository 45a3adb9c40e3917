// agrad._core: the Python face of the engine in cpp/.
//
// The module is a pybind11 module, and its functions (`sum`, `dot`, ...) are
// pybind11 functions.  `Value` is not a py::class_: its type is made with
// CPython's public type-spec API (PyType_FromSpec) and its object layout is
// our own struct.  An operation on Values is the hot path of every training
// loop, and pybind11's dispatcher costs several times the operation itself;
// so the number slots (nb_add, nb_multiply, ...), `data`, `grad`, `label`,
// `backward()` and the allocation of results are plain C functions, with the
// engine's node id stored inside the Python object.  Nothing here depends on
// how pybind11 lays out its own objects, so no pybind11 release can make this
// module build into something that hands out half-made objects.
//
// A Value object holds one reference to its node; the node knows its object
// (`owner`) so that `_prev` hands back the very objects the user holds.
// Children that have no live object (a constant in `w * 2.5`, an intermediate
// result that was dropped) get one made on request.
//
// Python code can run in the middle of many calls here: a number's
// `__float__` or `__index__`, an iterator's `__next__`, a weakref callback or
// a subclass's `__del__` while a Value is freed, the garbage collector at any
// allocation of a tuple or set.  The rules that keep the engine consistent
// whatever that code does:
//   * all conversions of Python operands happen first; node ids are read from
//     Value objects only after the last of them, and then no Python code runs
//     until the engine has made its node;
//   * a Value is fixed once made: `__init__` runs once (a second call is a
//     TypeError, on both engines), so a Value's node never changes;
//   * an object whose reference count has reached zero is being freed: it is
//     never handed out again, and the node forgets it before any callback runs.
//
// The engine is shared by every thread of the process and is only touched
// with the GIL held.  It is also shared by nothing else: the module refuses
// to load in a subinterpreter, whose objects could not use this process-wide
// graph safely (and where pybind11 would deadlock taking the GIL).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <structmember.h>  // PyMemberDef, T_PYSSIZET: __weaklistoffset__ for PyType_FromSpec

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstddef>
#include <exception>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "agrad/graph.hpp"
#include "agrad/replay.hpp"

namespace py = pybind11;
using agrad::Comparison;
using agrad::Graph;
using agrad::NodeId;
using agrad::Number;
using agrad::Op;
using agrad::Operand;
using agrad::Status;

namespace {

struct ValueObject {
    PyObject_HEAD NodeId node;
    bool initialized;    // __init__ has run: it may not run again
    PyObject* weakrefs;  // the type's weak reference list
};

// Never destroyed: Values may outlive the module during interpreter shutdown.
Graph* graph = nullptr;
PyTypeObject* value_type = nullptr;
PyObject* integral_abc = nullptr;     // numbers.Integral
PyObject* real_abc = nullptr;         // numbers.Real
PyObject* restore_leaf = nullptr;     // agrad._core._restore_leaf, for __reduce__
PyObject* enum_type = nullptr;        // enum.Enum: an enum argument selects a program, like a str
PyObject* recording_error = nullptr;  // agrad._core.RecordingError, a RuntimeError
// agrad's Python files and the standard library's: a refusal names the user's
// line, not the line of draw_dot or copy.copy that read the data for them
std::vector<std::string> library_dirs;

constexpr const char* kIntRange = "integer result out of agrad's 64-bit range; use a float";
constexpr const char* kAlreadyMade =
    "Value.__init__ runs once: a Value is fixed once made; make a new Value instead";

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

inline ValueObject* as_value(PyObject* o) { return reinterpret_cast<ValueObject*>(o); }
inline NodeId node_of(PyObject* o) { return as_value(o)->node; }

void operation_failed_while_recording();  // (below, with the recording)

// -- errors: the exception Python raises for the same arithmetic on floats
PyObject* raise(Status s) {
    operation_failed_while_recording();
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

// -- the one check of agrad.compile's soundness.
// While a thread records a compiled function, the graph it builds must not
// depend on the numbers: the program replays that one graph for any inputs.
// Every way Python code can observe or change a node's numbers (data, grad,
// repr, pickling, backward(), an optimizer's bulk transfers) asks
// `refused_while_recording` first, the one check, so a path added later has
// one thing to call.  A comparison is the exception: its outcome is recorded
// as a guard (see `value_richcompare`).
enum class Access {
    ReadData,
    WriteData,
    ReadGrad,
    WriteGrad,
    Print,
    Copy,
    Truth,
    EqualsNumber,
    Backward,
    OptimizerRead,
    OptimizerWrite,
};
bool refuse(Access access);  // (below, with the recording): raises, returns true

inline bool refused_while_recording(Access access) { return graph->recording() && refuse(access); }

// -- numbers in: 1 converted, 0 not a real number (NotImplemented), -1 error set.
// The rules of agrad.pure.as_number: int and bool and numbers.Integral become
// 64-bit ints, float and numbers.Real become doubles.  A subclass of int or
// float stands for its own value (PyNumber_Index and PyFloat_AsDouble do not
// call an override of __index__ or __float__ on one), as in Python's math.
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
    if (PyFloat_Check(o)) {
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

// TypeError(f"{what} {type(o).__name__!r}"): the words of the pure engine's
// errors, which name a type by its __name__ ('ndarray', not 'numpy.ndarray').
void type_error_naming(const char* what, PyObject* o) {
    PyObject* name = PyObject_GetAttrString(reinterpret_cast<PyObject*>(Py_TYPE(o)), "__name__");
    if (!name) return;
    PyErr_Format(PyExc_TypeError, "%s %R", what, name);
    Py_DECREF(name);
}

// The same, for places where anything but a number is a TypeError.
bool require_number(PyObject* o, Number* out) {
    int r = to_number(o, out);
    if (r == 0) type_error_naming("a Value holds a real number, not", o);
    return r == 1;
}

PyObject* number_to_python(Number n) {
    return n.is_int ? PyLong_FromLongLong(n.i) : PyFloat_FromDouble(n.f);
}

// -- strings.  The engine keeps labels and op names as UTF-8.  A Python str
// may hold lone surrogates, which strict UTF-8 cannot encode: they pass
// through ("surrogatepass"), so every str comes back as it went in.
bool check_str(PyObject* o, const char* what) {
    if (PyUnicode_Check(o)) return true;
    type_error_naming(what, o);
    return false;
}

bool utf8_of(PyObject* text, std::string* out) {
    Py_ssize_t size;
    if (const char* p = PyUnicode_AsUTF8AndSize(text, &size)) {
        out->assign(p, static_cast<size_t>(size));
        return true;
    }
    if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return false;
    PyErr_Clear();
    PyObject* bytes = PyUnicode_AsEncodedString(text, "utf-8", "surrogatepass");
    if (!bytes) return false;
    out->assign(PyBytes_AS_STRING(bytes), static_cast<size_t>(PyBytes_GET_SIZE(bytes)));
    Py_DECREF(bytes);
    return true;
}

PyObject* str_of(const std::string& text) {
    return PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "surrogatepass");
}

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
PyObject* not_implemented() { Py_RETURN_NOTIMPLEMENTED; }

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
void record_guard(Comparison c, NodeId a, Operand b, bool outcome);  // (with the recording)

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

PyObject* value_exp(PyObject* self, PyObject*) { return unary(self, Op::Exp); }
PyObject* value_log(PyObject* self, PyObject*) { return unary(self, Op::Log); }
PyObject* value_tanh(PyObject* self, PyObject*) { return unary(self, Op::Tanh); }
PyObject* value_relu(PyObject* self, PyObject*) { return unary(self, Op::Relu); }
PyObject* value_sigmoid(PyObject* self, PyObject*) { return unary(self, Op::Sigmoid); }

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
            return PyUnicode_FromString("+");
        case Op::Mul:
            return PyUnicode_FromString("*");
        case Op::Pow: {  // "**k", k as str() prints it, as the pure engine's f-string
            PyObject* k = number_to_python(graph->param(id));
            if (!k) return nullptr;
            PyObject* text = PyUnicode_FromFormat("**%S", k);
            Py_DECREF(k);
            return text;
        }
        case Op::Exp:
            return PyUnicode_FromString("exp");
        case Op::Log:
            return PyUnicode_FromString("log");
        case Op::Tanh:
            return PyUnicode_FromString("tanh");
        case Op::Relu:
            return PyUnicode_FromString("ReLU");
        case Op::Sigmoid:
            return PyUnicode_FromString("sigmoid");
        case Op::Sum:
            return PyUnicode_FromString("sum");
        case Op::Dot:
            return PyUnicode_FromString("dot");
        case Op::Custom:
            return str_of(graph->op_name(id));
    }
    return PyUnicode_FromString("");
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

// No C++ exception may cross into CPython.  The engine's only one is
// std::bad_alloc (memory exhausted), which becomes MemoryError; anything else
// would be a bug here, and becomes SystemError rather than std::terminate.
template <class R>
R failed() {
    if constexpr (std::is_pointer_v<R>)
        return nullptr;
    else
        return -1;
}

template <auto F, class... Args>
auto no_throw(Args... args) noexcept -> decltype(F(args...)) {
    using R = decltype(F(args...));
    try {
        return F(args...);
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    } catch (const std::exception& e) {
        PyErr_Format(PyExc_SystemError, "agrad: internal error: %s", e.what());
    } catch (...) {
        PyErr_SetString(PyExc_SystemError, "agrad: internal error");
    }
    return failed<R>();
}

// Deallocation cannot report an error; its engine calls only give memory back.
template <auto F, class... Args>
void no_throw_void(Args... args) noexcept {
    try {
        F(args...);
    } catch (...) {
        PyErr_WriteUnraisable(nullptr);
    }
}

using Getter = PyObject* (*)(PyObject*, void*);
using Setter = int (*)(PyObject*, PyObject*, void*);
using Method = PyObject* (*)(PyObject*, PyObject*);

template <auto F>
constexpr Getter getter = no_throw<F, PyObject*, void*>;
template <auto F>
constexpr Setter setter = no_throw<F, PyObject*, PyObject*, void*>;
template <auto F>
constexpr Method method = no_throw<F, PyObject*, PyObject*>;

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
    {"exp", method<value_exp>, METH_NOARGS, "exp($self, /)\n--\n\ne ** self, as a Value."},
    {"log", method<value_log>, METH_NOARGS,
     "log($self, /)\n--\n\nThe natural logarithm of self, as a Value."},
    {"tanh", method<value_tanh>, METH_NOARGS, "tanh($self, /)\n--\n\ntanh(self), as a Value."},
    {"relu", method<value_relu>, METH_NOARGS,
     "relu($self, /)\n--\n\nmax(self, 0), as a Value (op 'ReLU')."},
    {"sigmoid", method<value_sigmoid>, METH_NOARGS,
     "sigmoid($self, /)\n--\n\n1 / (1 + exp(-self)), as a Value."},
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

// -- agrad.sum and agrad.dot (pybind11 functions)
py::object steal_or_throw(PyObject* o) {
    if (!o) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(o);
}

// A fresh list of the iterable's items: ours alone, so no code the
// conversions run can change it, and a one-shot iterator is read only once.
py::list items_of(py::handle iterable) {
    PyObject* list = PySequence_List(iterable.ptr());
    if (!list) throw py::error_already_set();
    return py::reinterpret_steal<py::list>(list);
}

// The operands of a fused node, in two passes: first every number is
// converted (which may run Python code), then the node ids of the Values
// are read, with no Python code in between and the Values kept alive by
// `items`.  Anything but a Value or a number is the TypeError `+` or `*`
// would raise.
std::vector<Operand> operands(const py::list& items, const char* op) {
    std::vector<Operand> out(items.size());
    for (size_t i = 0; i < out.size(); ++i) {
        PyObject* item = PyList_GET_ITEM(items.ptr(), static_cast<Py_ssize_t>(i));
        if (is_value(item)) continue;
        Number n;
        int r = to_number(item, &n);
        if (r < 0) throw py::error_already_set();
        if (r == 0)
            throw py::type_error(std::string("unsupported operand type(s) for ") + op +
                                 ": 'Value' and '" + Py_TYPE(item)->tp_name + "'");
        out[i] = Operand::of_number(n);
    }
    return out;
}

// The second pass: node ids, once no more Python code will run.
bool read_nodes(const py::list& items, std::vector<Operand>& out) {
    bool any_value = false;
    for (size_t i = 0; i < out.size(); ++i) {
        PyObject* item = PyList_GET_ITEM(items.ptr(), static_cast<Py_ssize_t>(i));
        if (!is_value(item)) continue;
        out[i] = Operand::of_node(node_of(item));
        any_value = true;
    }
    return any_value;
}

py::object fused_sum(py::handle values, py::handle start) {
    py::list items = items_of(values);
    if (is_value(start.ptr()))
        // A fused node keeps a number as its start.  The builtin's chain from a
        // Value start is `agrad.sum([start, *values])` but for the sign of a
        // zero start (0 + -0.0 is 0.0), so say how to write each.
        throw py::type_error(
            "agrad.sum: start must be a number, not a Value; write agrad.sum([start, *values]) "
            "(the same chain of additions from 0), or start + agrad.sum(values) (start added "
            "last)");
    Number s;
    if (!require_number(start.ptr(), &s)) throw py::error_already_set();
    std::vector<Operand> terms = operands(items, "+");
    if (!read_nodes(items, terms))  // no Value at all: what the builtin gives
        return py::module_::import("builtins").attr("sum")(items, start);
    NodeId id;
    Status st = graph->sum(terms.data(), terms.size(), s, &id);
    return steal_or_throw(finish(st, id));
}

py::object fused_dot(py::handle weights, py::handle inputs) {
    py::list w_items = items_of(weights);
    py::list x_items = items_of(inputs);
    if (w_items.size() != x_items.size())
        throw py::value_error("dot: weights and inputs differ in length (" +
                              std::to_string(w_items.size()) + " and " +
                              std::to_string(x_items.size()) + ")");
    std::vector<Operand> w = operands(w_items, "*");
    std::vector<Operand> x = operands(x_items, "*");
    bool w_has_value = read_nodes(w_items, w);
    bool x_has_value = read_nodes(x_items, x);
    if (!w_has_value && !x_has_value) {  // numbers only: the builtin expression
        py::object builtins = py::module_::import("builtins");
        py::object product = py::module_::import("operator").attr("mul");
        return builtins.attr("sum")(builtins.attr("map")(product, w_items, x_items));
    }
    NodeId id;
    Status st = graph->dot(w.data(), x.data(), w.size(), &id);
    return steal_or_throw(finish(st, id));
}

py::object make_leaf(py::handle data, py::handle grad, py::handle label) {
    py::object v = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(value_type))(
        data, py::arg("label") = label);
    v.attr("grad") = grad;
    return v;
}

// -- agrad.compile: record once, replay in C++.
//
// Recording: the thread's log collects every node the thread makes while the
// compiled function runs, in the order it made them, each with one reference
// (Graph::begin_recording).  That order is the order eager code computed the
// values in, so a replay that recomputes the logged nodes in it performs the
// same operations in the same order, hits the same error first, and leaves
// nodes made before the recording (the parameters, anything captured) alone:
// those are read, at their current data, by every replay.
// Guards: a comparison made while recording, with its outcome.  A replay
// checks each one on the new numbers; if any comes out otherwise, the
// recorded graph is not the one eager code would build, and the caller
// records again.
struct Guard {
    Comparison comparison;
    bool outcome;
    NodeId left;
    Operand right;
};

struct Recording {
    std::vector<NodeId> log;        // every node made, in order (Graph::begin_recording)
    std::vector<Guard> guards;      // in the order the comparisons ran
    std::vector<NodeId> guarded;    // the guards' nodes, one reference each
    bool operation_failed = false;  // an operation raised: its program is not kept
    std::string refusal;            // the first access refused, if the function caught it
};
thread_local Recording* recording = nullptr;

void release_all(const std::vector<NodeId>& ids) {
    for (NodeId id : ids) graph->release(id);
}

void record_guard(Comparison c, NodeId left, Operand right, bool outcome) {
    Recording& r = *recording;
    r.guards.push_back(Guard{c, outcome, left, right});
    graph->retain(left);
    r.guarded.push_back(left);
    if (right.is_node()) {
        graph->retain(right.node);
        r.guarded.push_back(right.node);
    }
}

void operation_failed_while_recording() {
    if (graph->recording()) recording->operation_failed = true;
}

// What the function did, and what to write instead, for each access refused.
struct Refusal {
    const char* what;
    const char* instead;
};

Refusal refusal_of(Access access) {
    switch (access) {
        case Access::ReadData:
            return {"read a Value's .data",
                    "To branch on a number, compare the Value itself (`if v > 0:` rather than "
                    "`if v.data > 0:`): a comparison is recorded as a guard and checked at every "
                    "call. To use the number, keep it a Value; to inspect it, read .data of the "
                    "result after the call."};
        case Access::WriteData:
            return {"wrote a Value's .data",
                    "Update parameters outside the compiled function, after the call (an "
                    "optimizer's step(), or p.data -= lr * p.grad)."};
        case Access::ReadGrad:
            return {"read a Value's .grad",
                    "Call backward() on the result and read gradients after the compiled call."};
        case Access::WriteGrad:
            return {"wrote a Value's .grad",
                    "Zero or set gradients outside the compiled function (backward() sets them "
                    "all anyway)."};
        case Access::Print:
            return {"printed a Value (repr, str, format or an f-string read its data)",
                    "Print the result after the call, or print outside the compiled function."};
        case Access::Truth:
            return {"used a Value as a truth value (`if v:`, `v and ...`; a Value is always true)",
                    "Compare it (`if v > 0:`, recorded as a guard). A flag should be a bool, "
                    "None, a str or an enum argument: those select the program, while a number "
                    "argument becomes an input Value."};
        case Access::EqualsNumber:
            return {"compared a Value to a number with == or != (which compare identity)",
                    "A mode or a flag should be a str, an enum or a bool argument (those select "
                    "the program; a number argument becomes an input Value). To test a Value's "
                    "number, write `v >= 1 and v <= 1` (comparisons are guards)."};
        case Access::Copy:
            return {"copied or pickled a Value (which reads its data)",
                    "Copy or pickle Values outside the compiled function."};
        case Access::Backward:
            return {"called backward()",
                    "Return the loss and call backward() on it after the compiled call: "
                    "loss = f(...); loss.backward()."};
        case Access::OptimizerRead:
            return {"read parameters' data or gradients in bulk (an optimizer's step())",
                    "Call the optimizer outside the compiled function: loss = f(...); "
                    "loss.backward(); optimizer.step()."};
        case Access::OptimizerWrite:
            return {
                "wrote parameters' data or gradients in bulk (an optimizer's step() or "
                "zero_grad())",
                "Call the optimizer outside the compiled function: loss = f(...); "
                "loss.backward(); optimizer.step()."};
    }
    return {"used a Value's numbers", ""};
}

std::string utf8_attribute(PyObject* o, const char* name) {
    std::string out;
    PyObject* a = PyObject_GetAttrString(o, name);
    if (a && PyUnicode_Check(a)) utf8_of(a, &out);
    Py_XDECREF(a);
    PyErr_Clear();
    return out;
}

// " (file:line, in function)" of the innermost frame outside the library
// directories: the user's line, even when agrad.draw_dot read the data.
std::string user_location() {
    PyFrameObject* frame = PyEval_GetFrame();  // borrowed
    Py_XINCREF(frame);
    std::string where;
    while (frame) {
        PyCodeObject* code = PyFrame_GetCode(frame);
        std::string file = utf8_attribute(reinterpret_cast<PyObject*>(code), "co_filename");
        bool ours = false;
        for (const std::string& dir : library_dirs) ours = ours || file.rfind(dir, 0) == 0;
        if (!ours) {
            where = " (" + file + ":" + std::to_string(PyFrame_GetLineNumber(frame)) + ", in " +
                    utf8_attribute(reinterpret_cast<PyObject*>(code), "co_name") + ")";
        }
        Py_DECREF(code);
        PyFrameObject* back = ours ? PyFrame_GetBack(frame) : nullptr;
        Py_DECREF(frame);
        frame = back;
    }
    return where;
}

bool refuse(Access access) {
    const Refusal r = refusal_of(access);
    std::string message = std::string("agrad.compile: the function ") + r.what +
                          " while being recorded" + user_location() +
                          "; a compiled function replays the recorded graph for any numbers, "
                          "so it may not depend on them. " +
                          r.instead;
    if (recording->refusal.empty()) recording->refusal = message;
    PyErr_SetString(recording_error, message.c_str());
    return true;
}

void begin_recording() {
    if (recording)
        throw std::runtime_error(
            "agrad.compile: a compiled function was called for the first time while another "
            "is being recorded; call it once outside first, or let the outer one be recorded "
            "whole");
    recording = new Recording();
    graph->begin_recording(&recording->log);
}

// Ends this thread's recording and hands it back (the caller releases the
// references its log and guards hold).
std::unique_ptr<Recording> end_recording() {
    std::unique_ptr<Recording> r(recording);
    if (!r) return std::make_unique<Recording>();
    graph->end_recording();
    recording = nullptr;
    return r;
}

void release_recording(const Recording& r) {
    release_all(r.log);
    release_all(r.guarded);
}

void abort_recording() { release_recording(*end_recording()); }

NodeId node_of_value(py::handle o, const char* what) {
    if (!is_value(o.ptr())) {
        type_error_naming(what, o.ptr());
        throw py::error_already_set();
    }
    return node_of(o.ptr());
}

// -- agrad.compile's arguments: their structure key and their numbers, in one
// pass in C.  A call of a compiled function with 2000 numbers spent as long
// flattening them in Python as the engine spends replaying the graph.
//
// The key says where each number sits (a plain number is "n"; a list or
// tuple of plain floats and ints is (type, length); any other list or tuple
// is (type, keys of its items); a NumPy array is (ndarray, shape); a Value is
// (Value, id, the Value); any other hashable argument is (type, itself)), so
// arguments of another structure never share a key and are recorded anew.
// The numbers are converted as they are met, by the rules `Value(x)` uses,
// into a Numbers object that Program.run reads without Python objects.
struct Numbers {
    std::vector<Number> values;
};

class ArgumentFlattener {
public:
    ArgumentFlattener(PyObject* ndarray, std::vector<Number>& out)
        : ndarray_(ndarray), out_(out), number_key_(py::str("n")) {}

    py::object key_of(PyObject* o) {
        PyTypeObject* t = Py_TYPE(o);
        if (t == &PyFloat_Type || t == &PyLong_Type) {
            convert(o);
            return number_key_;
        }
        if (t == &PyList_Type || t == &PyTuple_Type) return sequence_key(o);
        if (reinterpret_cast<PyObject*>(t) == ndarray_) return array_key(o);
        if (is_value(o)) {
            PyObject* id = PyLong_FromVoidPtr(o);
            if (!id) throw py::error_already_set();
            return py::make_tuple(py::handle(reinterpret_cast<PyObject*>(value_type)),
                                  py::reinterpret_steal<py::object>(id), py::handle(o));
        }
        // A bool or an enum is a flag or a mode, not a number to differentiate:
        // like a str, it selects the program (JAX's static arguments), so
        // `if regularize:` and `mode == Mode.L1` are decided anew for each value.
        int flag = PyBool_Check(o) ? 1 : PyObject_IsInstance(o, enum_type);
        if (flag < 0) throw py::error_already_set();
        if (flag) return py::make_tuple(py::handle(reinterpret_cast<PyObject*>(t)), py::handle(o));
        int real = PyObject_IsInstance(o, real_abc);  // NumPy scalars, Fraction, ...
        if (real < 0) throw py::error_already_set();
        if (real) {
            convert(o);
            return number_key_;
        }
        if (PyList_Check(o) || PyTuple_Check(o) || PyDict_Check(o) || PyAnySet_Check(o)) {
            type_error_naming(
                "agrad.compile: arguments may be numbers, lists, tuples and NumPy arrays of "
                "them, or hashable constants, not",
                o);
            throw py::error_already_set();
        }
        if (PyObject_Hash(o) == -1) {
            if (!PyErr_ExceptionMatches(PyExc_TypeError)) throw py::error_already_set();
            PyErr_Clear();
            type_error_naming(
                "agrad.compile: an argument that is not a number or a list, tuple or NumPy "
                "array of them must be hashable (it is part of what a recording is kept "
                "for), not",
                o);
            throw py::error_already_set();
        }
        return py::make_tuple(py::handle(reinterpret_cast<PyObject*>(t)), py::handle(o));
    }

private:
    // Room for n more numbers, growing geometrically: an exact reserve per
    // inner list of a list of lists would copy the numbers again each time.
    void make_room(size_t n) {
        const size_t need = out_.size() + n;
        if (need > out_.capacity()) out_.reserve(std::max(need, 2 * out_.capacity()));
    }

    // (first, second) with second a new reference (or null, an error set)
    static py::object pair(PyObject* first, PyObject* second) {
        if (!second) throw py::error_already_set();
        PyObject* t = PyTuple_New(2);
        if (!t) {
            Py_DECREF(second);
            throw py::error_already_set();
        }
        Py_INCREF(first);
        PyTuple_SET_ITEM(t, 0, first);
        PyTuple_SET_ITEM(t, 1, second);
        return py::reinterpret_steal<py::object>(t);
    }

    void convert(PyObject* o) {
        Number n;
        if (to_number(o, &n) < 0) throw py::error_already_set();
        out_.push_back(n);
    }

    static bool all_plain(PyObject* const* items, Py_ssize_t n) {
        for (Py_ssize_t i = 0; i < n; ++i) {
            PyTypeObject* t = Py_TYPE(items[i]);
            if (t != &PyFloat_Type && t != &PyLong_Type) return false;
        }
        return true;
    }

    // Exact floats and ints: converting them runs no Python code.
    void convert_plain(PyObject* const* items, Py_ssize_t n) {
        make_room(static_cast<size_t>(n));
        for (Py_ssize_t i = 0; i < n; ++i) {
            PyObject* x = items[i];
            if (Py_TYPE(x) == &PyFloat_Type) {
                out_.push_back(Number::of_float(PyFloat_AS_DOUBLE(x)));
            } else {
                Number v;
                if (int_from_pylong(x, &v) < 0) throw py::error_already_set();
                out_.push_back(v);
            }
        }
    }

    // convert_plain in one pass over the items, which are often scattered in
    // memory: converted while they are plain, undone at the first that is not.
    bool try_plain(PyObject* const* items, Py_ssize_t n) {
        const size_t mark = out_.size();
        make_room(static_cast<size_t>(n));
        for (Py_ssize_t i = 0; i < n; ++i) {
            PyObject* x = items[i];
            PyTypeObject* t = Py_TYPE(x);
            if (t == &PyFloat_Type) {
                out_.push_back(Number::of_float(PyFloat_AS_DOUBLE(x)));
            } else if (t == &PyLong_Type) {
                Number v;
                if (int_from_pylong(x, &v) < 0) throw py::error_already_set();
                out_.push_back(v);
            } else {
                out_.resize(mark);
                return false;
            }
        }
        return true;
    }

    // Rows: n lists (or n tuples) of m plain numbers each, as a batch of
    // feature vectors comes.  Read in place, with one key for all of them.
    static bool plain_rows(PyObject* const* items, Py_ssize_t n, Py_ssize_t* m) {
        if (n == 0) return false;
        PyTypeObject* row = Py_TYPE(items[0]);
        if (row != &PyList_Type && row != &PyTuple_Type) return false;
        *m = PySequence_Fast_GET_SIZE(items[0]);
        for (Py_ssize_t i = 0; i < n; ++i)
            if (Py_TYPE(items[i]) != row || PySequence_Fast_GET_SIZE(items[i]) != *m ||
                !all_plain(PySequence_Fast_ITEMS(items[i]), *m))
                return false;
        return true;
    }

    py::object sequence_key(PyObject* o) {
        PyObject* type = reinterpret_cast<PyObject*>(Py_TYPE(o));
        // The common cases, plain numbers and rows of them: no Python code
        // runs, so the list is read in place, with no key per item.
        PyObject** fast = PySequence_Fast_ITEMS(o);  // o is an exact list or tuple
        Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
        if (try_plain(fast, n)) return pair(type, PyLong_FromSsize_t(n));
        Py_ssize_t m = 0;
        if (plain_rows(fast, n, &m)) {
            make_room(static_cast<size_t>(n) * static_cast<size_t>(m));
            for (Py_ssize_t i = 0; i < n; ++i) convert_plain(PySequence_Fast_ITEMS(fast[i]), m);
            // (type, n, row type, m): a 4-tuple, never equal to another kind's key
            py::object rows = pair(type, PyLong_FromSsize_t(n));
            py::object row = pair(reinterpret_cast<PyObject*>(Py_TYPE(fast[0])),
                                  PyLong_FromSsize_t(m));
            PyObject* key = PySequence_Concat(rows.ptr(), row.ptr());
            if (!key) throw py::error_already_set();
            return py::reinterpret_steal<py::object>(key);
        }
        // Otherwise a tuple of the items: a conversion (a __float__, an
        // __index__) may run code that changes the list under us.
        py::object items = py::reinterpret_steal<py::object>(PySequence_Tuple(o));
        if (!items) throw py::error_already_set();
        n = PyTuple_GET_SIZE(items.ptr());
        if (Py_EnterRecursiveCall(" while flattening agrad.compile's arguments"))
            throw py::error_already_set();
        struct Leave {
            ~Leave() { Py_LeaveRecursiveCall(); }
        } leave;
        py::object keys = py::reinterpret_steal<py::object>(PyTuple_New(n));
        if (!keys) throw py::error_already_set();
        for (Py_ssize_t i = 0; i < n; ++i)
            PyTuple_SET_ITEM(keys.ptr(), i,
                             key_of(PyTuple_GET_ITEM(items.ptr(), i)).release().ptr());
        return pair(type, keys.release().ptr());
    }

    // A float64 array is read through the buffer protocol, in C order (the
    // order of ravel()); other dtypes of numbers as ravel().tolist() gives them.
    py::object array_key(PyObject* o) {
        py::object shape = py::reinterpret_steal<py::object>(PyObject_GetAttrString(o, "shape"));
        if (!shape) throw py::error_already_set();
        if (!read_float64(o)) {
            py::object dtype = py::reinterpret_borrow<py::object>(o).attr("dtype");
            std::string kind = py::str(dtype.attr("kind"));
            if (kind.size() != 1 || std::string("biuf").find(kind[0]) == std::string::npos)
                throw py::type_error(
                    "agrad.compile: a NumPy array argument must hold numbers, not dtype " +
                    std::string(py::str(dtype)));
            py::object items = py::reinterpret_borrow<py::object>(o).attr("ravel")().attr(
                "tolist")();
            if (!PyList_Check(items.ptr())) throw py::type_error("ndarray.tolist() gave no list");
            const Py_ssize_t n = PyList_GET_SIZE(items.ptr());
            for (Py_ssize_t i = 0; i < n; ++i) convert(PyList_GET_ITEM(items.ptr(), i));
        }
        return py::make_tuple(py::handle(ndarray_), shape);
    }

    bool read_float64(PyObject* o) {
        Py_buffer view;
        if (PyObject_GetBuffer(o, &view, PyBUF_RECORDS_RO) < 0) {
            PyErr_Clear();  // an object array, say: the slow path tells
            return false;
        }
        struct Release {
            Py_buffer* view;
            ~Release() { PyBuffer_Release(view); }
        } release{&view};
        const char* f = view.format ? view.format : "B";
        if (view.itemsize != 8 || !(std::strcmp(f, "d") == 0 || std::strcmp(f, "=d") == 0 ||
                                    (kLittleEndian && std::strcmp(f, "<d") == 0)))
            return false;
        const Py_ssize_t count = view.len / 8;
        make_room(static_cast<size_t>(count));
        if (count == 0) return true;
        const int ndim = view.ndim;
        std::vector<Py_ssize_t> index(static_cast<size_t>(ndim), 0);
        const char* base = static_cast<const char*>(view.buf);
        for (Py_ssize_t k = 0; k < count; ++k) {
            Py_ssize_t offset = 0;
            for (int d = 0; d < ndim; ++d)
                offset += index[static_cast<size_t>(d)] * view.strides[d];
            double x;
            std::memcpy(&x, base + offset, sizeof x);
            out_.push_back(Number::of_float(x));
            for (int d = ndim - 1; d >= 0; --d) {  // the next index, last axis fastest
                if (++index[static_cast<size_t>(d)] < view.shape[d]) break;
                index[static_cast<size_t>(d)] = 0;
            }
        }
        return true;
    }

    static constexpr bool kLittleEndian = PY_LITTLE_ENDIAN != 0;
    PyObject* ndarray_;
    std::vector<Number>& out_;
    py::object number_key_;
};

// (key, numbers) of a call's positional and keyword arguments.
py::tuple flatten_arguments(const py::tuple& args, const py::dict& kwargs, py::handle ndarray) {
    Numbers numbers;
    ArgumentFlattener flattener(ndarray.ptr(), numbers.values);
    const size_t n = args.size();
    py::tuple keys(n);
    for (size_t i = 0; i < n; ++i) keys[i] = flattener.key_of(args[i].ptr());
    py::object key = keys;
    if (!kwargs.empty()) {
        // a private copy of the items: converting a number may run Python code
        py::list items = py::reinterpret_steal<py::list>(PyDict_Items(kwargs.ptr()));
        if (!items) throw py::error_already_set();
        py::tuple pairs(items.size());
        for (size_t i = 0; i < items.size(); ++i) {
            py::tuple item = items[i];
            pairs[i] = py::make_tuple(item[0], flattener.key_of(item[1].ptr()));
        }
        key = py::make_tuple(keys, pairs);
    }
    return py::make_tuple(key, py::cast(std::move(numbers)));
}

// A recorded graph: what the binding keeps of it between calls.
class Program {
public:
    // `outputs` are the roots backward() will be called on: those the program
    // made keep their backward schedule for as long as the program lives
    // (a root made before the recording is not the program's to mark).
    Program(Recording&& r, std::vector<NodeId> inputs, const std::vector<NodeId>& outputs)
        : held_(std::move(r.log)),
          inputs_(std::move(inputs)),
          guards_(std::move(r.guards)),
          guarded_(std::move(r.guarded)) {
        for (NodeId id : held_)
            if (graph->op(id) != Op::Leaf) steps_.push_back(id);
        std::vector<NodeId> made(held_);
        std::sort(made.begin(), made.end());
        for (NodeId id : outputs)
            if (std::binary_search(made.begin(), made.end(), id) && !graph->keeps_schedule(id)) {
                graph->keep_schedule(id);
                scheduled_.push_back(id);
            }
    }
    Program(const Program&) = delete;
    Program& operator=(const Program&) = delete;
    ~Program() {  // pybind11 destroys it with the GIL held
        for (NodeId id : scheduled_) graph->forget_schedule(id);
        release_all(held_);
        release_all(guarded_);
    }

    // The new numbers into the inputs (all converted before any is written),
    // then every operation again, in the recorded order.  False when a guard
    // came out otherwise than at the recording (the graph is then not the
    // one eager code would build for these numbers) or an operation failed:
    // the program's values are then not the result, and the caller runs the
    // function itself.
    bool run(const py::handle& numbers) {
        PyObject* seq = PySequence_Fast(numbers.ptr(), "numbers must be a sequence");
        if (!seq) throw py::error_already_set();
        py::object holder = py::reinterpret_steal<py::object>(seq);
        const size_t n = static_cast<size_t>(PySequence_Fast_GET_SIZE(seq));
        std::vector<Number> values(n);
        PyObject** items = PySequence_Fast_ITEMS(seq);
        for (size_t i = 0; i < n; ++i)
            if (!require_number(items[i], &values[i])) throw py::error_already_set();
        return replay(values);
    }
    // The same with numbers _flatten converted already.
    bool run_converted(const Numbers& numbers) { return replay(numbers.values); }
    size_t operations() const { return steps_.size(); }
    size_t nodes() const { return held_.size(); }
    size_t inputs() const { return inputs_.size(); }
    size_t guards() const { return guards_.size(); }

private:
    std::vector<NodeId> held_;       // every node made while recording, one reference each
    std::vector<NodeId> inputs_;     // the leaves the arguments' numbers go into
    std::vector<Guard> guards_;      // the comparisons made while recording, in order
    std::vector<NodeId> guarded_;    // their nodes, one reference each
    std::vector<NodeId> steps_;      // the logged nodes made by operations, in creation order
    std::vector<NodeId> scheduled_;  // the outputs whose backward schedule is kept
    agrad::Replay replay_;           // steps_ decoded, made at the first run

    bool guards_hold() const {
        for (const Guard& g : guards_) {
            const Number right = g.right.is_node() ? graph->value(g.right.node) : g.right.number;
            if (agrad::holds(g.comparison, agrad::order(graph->value(g.left), right)) != g.outcome)
                return false;
        }
        return true;
    }

    bool replay(const std::vector<Number>& values) {
        if (recording)
            throw std::runtime_error(
                "agrad.compile: a compiled function was called while another is being "
                "recorded; call it outside, or let the outer function be recorded whole");
        const size_t n = values.size();
        if (n != inputs_.size())
            throw py::value_error("agrad.compile: the program has " +
                                  std::to_string(inputs_.size()) + " inputs, given " +
                                  std::to_string(n) + " numbers");
        for (size_t i = 0; i < n; ++i) graph->set_value(inputs_[i], values[i]);
        // Floats only, the common case: the decoded program (replay.hpp).
        // Otherwise, or if an operation fails, every step again by the
        // engine's general rules.  A guard's operands are made before it,
        // so a guard checked after the whole pass reads what eager code
        // would have compared.
        if (!replay_.built_for(*graph)) replay_.build(*graph, steps_);
        if (replay_.run(*graph)) return guards_hold();
        // An operation that fails is no result either: eager code may catch
        // the error (`except ValueError:`) or never reach the operation (a
        // guard before it flipped).  The caller runs the function again,
        // which raises or not exactly as eager code does.
        for (NodeId id : steps_)
            if (graph->recompute(id) != Status::Ok) return false;
        return guards_hold();
    }
};

// A fixed list of Values whose data and gradients an optimizer (agrad.optim)
// reads and writes in one call each, through float64 buffers: 337 `p.grad`
// reads, `p.data` reads and writes and `p.grad = 0.0` cost more than the
// replayed forward and backward passes of micrograd's demo model.
class Parameters {
    // pybind11 methods raise by exception: the one check, then its error thrown
    static void refuse_while_recording(Access access) {
        if (refused_while_recording(access)) throw py::error_already_set();
    }

public:
    explicit Parameters(const py::list& values) : values_(values) {  // a private copy
        ids_.reserve(values_.size());
        for (py::handle v : values_)
            ids_.push_back(node_of_value(v, "parameters must be agrad.Values, not"));
    }
    // float(p.data), as Python turns an int into a float in `p.data - x`
    void data(const py::buffer& out) const {
        refuse_while_recording(Access::OptimizerRead);
        double* d = doubles(out, true);
        for (size_t i = 0; i < ids_.size(); ++i) d[i] = graph->value(ids_[i]).as_double();
    }
    void grads(const py::buffer& out) const {
        refuse_while_recording(Access::OptimizerRead);
        double* d = doubles(out, true);
        for (size_t i = 0; i < ids_.size(); ++i) d[i] = graph->grad(ids_[i]);
    }
    void assign(const py::buffer& in) {
        refuse_while_recording(Access::OptimizerWrite);
        const double* d = doubles(in, false);
        for (size_t i = 0; i < ids_.size(); ++i) graph->set_value(ids_[i], Number::of_float(d[i]));
    }
    void zero_grad() {
        refuse_while_recording(Access::OptimizerWrite);
        for (NodeId id : ids_) graph->set_grad(id, 0.0);
    }
    size_t size() const { return ids_.size(); }

private:
    py::list values_;  // holds the Values, so that each node stays theirs
    std::vector<NodeId> ids_;

    double* doubles(const py::buffer& buffer, bool writable) const {
        py::buffer_info info = buffer.request(writable);
        if (info.format != py::format_descriptor<double>::format() || info.ndim != 1 ||
            info.strides[0] != static_cast<py::ssize_t>(sizeof(double)))
            throw py::type_error("a contiguous one-dimensional float64 buffer is needed");
        if (static_cast<size_t>(info.shape[0]) != ids_.size())
            throw py::value_error("the buffer has " + std::to_string(info.shape[0]) +
                                  " numbers for " + std::to_string(ids_.size()) + " parameters");
        return static_cast<double*>(info.ptr);
    }
};

// Ends the recording and makes its program.  The inputs must be leaves made
// during the recording (so that the program holds them); a node made by hand
// with Value(data, children, op) has no operation to replay, and is refused.
// None when an operation raised while recording and the function went on
// (an `except` branch): that call ran eagerly, and its graph is not kept,
// since a replay would take the same branch whatever the numbers.
std::unique_ptr<Program> finish_recording(const py::list& inputs, const py::list& outputs) {
    std::unique_ptr<Recording> r = end_recording();
    if (!r->refusal.empty()) {  // the function caught a refusal and went on: raise it again
        release_recording(*r);
        PyErr_SetString(recording_error, r->refusal.c_str());
        throw py::error_already_set();
    }
    try {
        std::vector<NodeId> input_ids;
        input_ids.reserve(inputs.size());
        for (py::handle v : inputs)
            input_ids.push_back(node_of_value(v, "inputs must be Values, not"));
        std::vector<NodeId> output_ids;
        output_ids.reserve(outputs.size());
        for (py::handle v : outputs)
            output_ids.push_back(node_of_value(v, "outputs must be Values, not"));
        for (NodeId id : r->log)
            if (graph->op(id) == Op::Custom)
                throw py::value_error(
                    "agrad.compile: the function made a Value by hand "
                    "(Value(data, _children, _op)); its data is not computed from its children, "
                    "so it cannot be replayed");
        if (r->operation_failed) {
            release_recording(*r);
            return nullptr;
        }
        return std::make_unique<Program>(std::move(*r), std::move(input_ids), output_ids);
    } catch (...) {
        release_recording(*r);
        throw;
    }
}

// -- the module.  Multi-phase initialisation, so that the check below runs
// before pybind11 touches its interpreter state.
void define_module(py::module_& m) {
    m.doc() = "agrad's compiled engine: Value, and fused sum and dot";
    if (!graph) {  // once per process: a second import must not start a second engine
        graph = new Graph();
        py::module_ numbers = py::module_::import("numbers");
        integral_abc = py::object(numbers.attr("Integral")).release().ptr();
        real_abc = py::object(numbers.attr("Real")).release().ptr();
        enum_type = py::object(py::module_::import("enum").attr("Enum")).release().ptr();
        recording_error = PyErr_NewExceptionWithDoc(
            "agrad._core.RecordingError",
            "A compiled function did, while being recorded, what a replay could not repeat: "
            "it read or wrote a Value's numbers (data, grad, repr, copy, backward(), an "
            "optimizer).  A RuntimeError; its message names the line and what to write "
            "instead.\n\n"
            ">>> import agrad\n"
            ">>> f = agrad.compile(lambda x: x * 2 if x.data > 0 else x)\n"
            ">>> f(1.0)  # doctest: +ELLIPSIS\n"
            "Traceback (most recent call last):\n"
            "    ...\n"
            "agrad._core.RecordingError: agrad.compile: the function read a Value's .data while "
            "being recorded (...)...\n"
            ">>> agrad.compile(lambda x: x * 2 if x > 0 else x)(1.0)  # a comparison: a guard\n"
            "Value(: 2.0)\n",
            PyExc_RuntimeError, nullptr);
        if (!recording_error) throw py::error_already_set();
        PyObject* type = PyType_FromSpec(&value_spec);
        if (!type) throw py::error_already_set();
        value_type = reinterpret_cast<PyTypeObject*>(type);
        // numpy must hand `np.float64(2) * v` back to Value's slots, not make an array
        if (PyObject_SetAttrString(type, "__array_ufunc__", Py_None) < 0)
            throw py::error_already_set();
    }
    py::object type = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(value_type));
    m.attr("Value") = type;

    m.attr("RecordingError") = py::handle(recording_error);
    m.def(
        "_set_library_dirs", [](std::vector<std::string> dirs) { library_dirs = std::move(dirs); },
        py::arg("dirs"),
        "Where library code lives: a refusal while recording names the first line outside.");
    m.def("_restore_leaf", &make_leaf, py::arg("data"), py::arg("grad"), py::arg("label"),
          "A leaf with this data, grad and label: how a pickled Value comes back.");
    if (!restore_leaf) restore_leaf = py::object(m.attr("_restore_leaf")).release().ptr();
    m.def("sum", &fused_sum, py::arg("values"), py::arg("start") = 0,
          "start + v0 + v1 + ... as one node: the data and gradients of the builtin "
          "sum's chain of additions, without the chain.\n\n"
          ">>> import agrad\n"
          ">>> total = agrad.sum([agrad.Value(1.0), agrad.Value(2.0)], 10)\n"
          ">>> total, total._op\n"
          "(Value(: 13.0), 'sum')\n"
          ">>> agrad.sum([1, 2])\n"
          "3\n");
    m.def("dot", &fused_dot, py::arg("weights"), py::arg("inputs"),
          "w0*x0 + w1*x1 + ... as one node: the data and gradients of "
          "sum(w * x for w, x in zip(weights, inputs)), without the chain.\n\n"
          ">>> import agrad\n"
          ">>> w = [agrad.Value(2.0), agrad.Value(3.0)]\n"
          ">>> y = agrad.dot(w, [1.0, 4.0])\n"
          ">>> y.backward()\n"
          ">>> y, [v.grad for v in w]\n"
          "(Value(: 14.0), [1.0, 4.0])\n");
    m.def("_begin_recording", &begin_recording,
          "Start recording the nodes this thread makes, for agrad.compile.");
    m.def("_abort_recording", &abort_recording,
          "Stop this thread's recording and let its nodes go.");
    m.def("_finish_recording", &finish_recording, py::arg("inputs"), py::arg("outputs"),
          "Stop this thread's recording and make its program, with these leaves as inputs; "
          "the outputs keep their backward schedule while the program lives.");
    // pybind11 registers a class once per process: a second import reuses it
    static PyObject* program_type = nullptr;
    if (!program_type) {
        py::class_<Program>(m, "_Program", "A recorded graph that agrad.compile replays.")
            .def("run", &Program::run_converted, py::arg("numbers"),
                 "Write the numbers into the inputs and recompute every recorded operation; "
                 "False if a guard (a comparison made while recording) came out otherwise.")
            .def("run", &Program::run, py::arg("numbers"))
            .def_property_readonly("operations", &Program::operations,
                                   "How many operations a replay recomputes.")
            .def_property_readonly("nodes", &Program::nodes, "How many nodes the program holds.")
            .def_property_readonly("inputs", &Program::inputs, "How many inputs the program has.")
            .def_property_readonly("guards", &Program::guards,
                                   "How many comparisons a replay checks.");
        program_type = py::object(m.attr("_Program")).release().ptr();
    }
    m.attr("_Program") = py::reinterpret_borrow<py::object>(program_type);
    static PyObject* parameters_type = nullptr;
    if (!parameters_type) {
        py::class_<Parameters>(m, "_Parameters",
                               "Values whose data and gradients move in one call (agrad.optim).")
            .def(py::init<const py::list&>(), py::arg("values"))
            .def("__len__", &Parameters::size)
            .def("data", &Parameters::data, py::arg("out"), "float(p.data) of each, into out.")
            .def("grads", &Parameters::grads, py::arg("out"), "p.grad of each, into out.")
            .def("assign", &Parameters::assign, py::arg("numbers"),
                 "p.data = numbers[i] of each, as floats.")
            .def("zero_grad", &Parameters::zero_grad, "p.grad = 0.0 of each.");
        parameters_type = py::object(m.attr("_Parameters")).release().ptr();
    }
    m.attr("_Parameters") = py::reinterpret_borrow<py::object>(parameters_type);
    static PyObject* numbers_type = nullptr;
    if (!numbers_type) {
        py::class_<Numbers>(m, "_Numbers", "A compiled call's numbers, converted.")
            .def("__len__", [](const Numbers& n) { return n.values.size(); })
            .def(
                "values",
                [](const Numbers& n) {
                    py::list out(n.values.size());
                    for (size_t i = 0; i < n.values.size(); ++i)
                        out[i] = steal_or_throw(number_to_python(n.values[i]));
                    return out;
                },
                "The numbers as Python ints and floats.");
        numbers_type = py::object(m.attr("_Numbers")).release().ptr();
    }
    m.attr("_Numbers") = py::reinterpret_borrow<py::object>(numbers_type);
    m.def("_flatten", &flatten_arguments, py::arg("args"), py::arg("kwargs"), py::arg("ndarray"),
          "The structure key of a compiled call's arguments, and their numbers.");
    m.def(
        "_live_nodes", [] { return graph->live_nodes(); },
        "How many nodes the engine holds now (for tests and benchmarks).");
    m.def(
        "_node_bytes", [] { return Graph::node_bytes(); },
        "The size of one node in the engine's arena.");
}

int exec_module(PyObject* module) noexcept {
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_ImportError,
                        "agrad._core cannot be imported in a subinterpreter: its engine is one "
                        "graph for the whole process, used from the main interpreter only");
        return -1;
    }
    try {
        py::module_ m = py::reinterpret_borrow<py::module_>(module);
        define_module(m);
        return 0;
    } catch (py::error_already_set& e) {
        e.restore();
    } catch (const std::exception& e) {
        PyErr_Format(PyExc_ImportError, "agrad._core: %s", e.what());
    }
    return -1;
}

PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, reinterpret_cast<void*>(exec_module)},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    {0, nullptr},
};

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_core", nullptr, 0, nullptr, module_slots, nullptr, nullptr, nullptr,
};

}  // namespace

extern "C" PYBIND11_EXPORT PyObject* PyInit__core() { return PyModuleDef_Init(&module_def); }
