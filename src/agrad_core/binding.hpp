// The binding's shared parts: what the files of src/agrad_core/ need of each
// other.  Each file is one topic of the module agrad._core:
//   module.cpp      the module: the engine made once, every file's part added
//   convert.cpp     numbers, strings and errors between Python and the engine
//   value.cpp       the Value type (its number slots, data, grad, pickling)
//   fused.cpp       agrad.sum and agrad.dot, one node each
//   compile.cpp     agrad.compile: recording, guards, refusals, arguments, the
//                   compiled program (the engine's Program with inputs and guards)
//   parameters.cpp  an optimizer's parameters moved in one call each way
//   higher.cpp      agrad.grad's sweeps (second derivatives)
// The rules every file keeps, and why Value is not a py::class_, are at the
// top of module.cpp.
#pragma once

#include <pybind11/pybind11.h>

#include <exception>
#include <new>
#include <string>
#include <type_traits>

#include "agrad/graph.hpp"

namespace agrad::binding {

namespace py = pybind11;
using agrad::Comparison;
using agrad::Graph;
using agrad::NodeId;
using agrad::Number;
using agrad::Op;
using agrad::Operand;
using agrad::Status;

struct ValueObject {
    PyObject_HEAD NodeId node;
    bool initialized;    // __init__ has run: it may not run again
    PyObject* weakrefs;  // the type's weak reference list
};

// Never destroyed: Values may outlive the module during interpreter shutdown.
extern Graph* graph;              // the one engine of the process (module.cpp)
extern PyTypeObject* value_type;  // agrad._core.Value (value.cpp)
extern PyObject* integral_abc;    // numbers.Integral (module.cpp)
extern PyObject* real_abc;        // numbers.Real (module.cpp)

inline constexpr const char* kIntRange = "integer result out of agrad's 64-bit range; use a float";

inline bool is_value(PyObject* o) {
    PyTypeObject* t = Py_TYPE(o);
    if (t == value_type) return true;
    // the other operand is most often a plain float or int: spare it the MRO walk
    if (t == &PyFloat_Type || t == &PyLong_Type) return false;
    return PyType_IsSubtype(t, value_type);
}

inline ValueObject* as_value(PyObject* o) { return reinterpret_cast<ValueObject*>(o); }
inline NodeId node_of(PyObject* o) { return as_value(o)->node; }

// -- errors: the exception Python raises for the same arithmetic on floats
// (convert.cpp); an engine error raised while recording marks the recording.
PyObject* raise(Status s);

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
bool refuse(Access access);  // (compile.cpp): raises, returns true

inline bool refused_while_recording(Access access) { return graph->recording() && refuse(access); }
void operation_failed_while_recording();
void record_guard(Comparison c, NodeId left, Operand right, bool outcome);

// -- numbers and strings in and out (convert.cpp)
int int_from_pylong(PyObject* o, Number* out);
int to_number(PyObject* o, Number* out);  // 1 converted, 0 not a real number, -1 error set
void type_error_naming(const char* what, PyObject* o);
bool require_number(PyObject* o, Number* out);
PyObject* number_to_python(Number n);
bool check_str(PyObject* o, const char* what);
bool utf8_of(PyObject* text, std::string* out);
PyObject* str_of(const std::string& text);

// -- Value objects (value.cpp)
PyObject* wrap_new(NodeId id);                         // a new object for a node that has none
PyObject* object_of(NodeId id);                        // the object that stands for a node
PyObject* finish(Status s, NodeId id);                 // a result's object, or the error raised
NodeId node_of_value(py::handle o, const char* what);  // or TypeError(what, its type)
inline PyObject* not_implemented() { Py_RETURN_NOTIMPLEMENTED; }

inline py::object steal_or_throw(PyObject* o) {
    if (!o) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(o);
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

// -- what each file adds to the module (module.cpp calls them in order)
void register_value(py::module_& m);
void register_fused(py::module_& m);
void register_compile(py::module_& m);
void register_parameters(py::module_& m);
void register_higher(py::module_& m);

}  // namespace agrad::binding
