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
//
// The module's parts are one topic a file (binding.hpp lists them); this file
// makes the engine once per process and adds each file's part.
#include <pybind11/pybind11.h>

#include <exception>

#include "binding.hpp"

namespace agrad::binding {

Graph* graph = nullptr;
PyObject* integral_abc = nullptr;
PyObject* real_abc = nullptr;

namespace {

// -- the module.  Multi-phase initialisation, so that the check below runs
// before pybind11 touches its interpreter state.
void define_module(py::module_& m) {
    m.doc() = "agrad's compiled engine: Value, and fused sum and dot";
    if (!graph) {  // once per process: a second import must not start a second engine
        graph = new Graph();
        py::module_ numbers = py::module_::import("numbers");
        integral_abc = py::object(numbers.attr("Integral")).release().ptr();
        real_abc = py::object(numbers.attr("Real")).release().ptr();
    }
    register_value(m);
    register_fused(m);
    register_compile(m);
    register_parameters(m);
    register_higher(m);
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
}  // namespace agrad::binding

extern "C" PYBIND11_EXPORT PyObject* PyInit__core() {
    return PyModuleDef_Init(&agrad::binding::module_def);
}
