// agrad.grad's sweeps on this engine (python/agrad/higher.py calls them for
// agrad.Value; cpp/higher.cpp has the engine's half and says why they are
// exact): _core._grad_sweep.
#include <vector>

#include "binding.hpp"

namespace agrad::binding {

// The gradients of `output` with respect to `inputs` (a list of Values): a
// list of floats, or with create_graph a list of Values, or, when a node
// made by hand stands on a path to an input (create_graph only), that node,
// for higher.py to refuse with the message agrad.pure's refusal gives.
py::object grad_sweep(py::handle output, const py::list& inputs, bool create_graph) {
    // (node ids read after the last Python code: the list is ours, its items held)
    const NodeId root = node_of_value(output, "output must be an agrad.Value, not");
    std::vector<NodeId> ids;
    ids.reserve(inputs.size());
    for (py::handle v : inputs) ids.push_back(node_of_value(v, "inputs must be agrad.Values, not"));
    const size_t n = ids.size();
    if (!create_graph) {
        if (refused_while_recording(Access::ReadGrad)) throw py::error_already_set();
        std::vector<double> grads(n);
        Status s = graph->gradients(root, ids.data(), n, grads.data());
        if (s != Status::Ok) {
            raise(s);
            throw py::error_already_set();
        }
        py::list out(n);
        for (size_t i = 0; i < n; ++i) out[i] = py::float_(grads[i]);
        return std::move(out);
    }
    std::vector<NodeId> grads(n);
    NodeId refused;
    Status s = graph->gradient_graph(
        root, ids.data(), n, graph->recording() ? record_guard : nullptr, grads.data(), &refused);
    if (s != Status::Ok) {
        raise(s);
        throw py::error_already_set();
    }
    if (refused != Graph::kNoNode) return steal_or_throw(object_of(refused));
    // each gradient comes with a reference, which its object takes over
    PyObject* list = PyList_New(static_cast<Py_ssize_t>(n));
    size_t made = 0;
    for (; list && made < n; ++made) {
        PyObject* v = object_of(grads[made]);
        if (!v) break;
        PyList_SET_ITEM(list, static_cast<Py_ssize_t>(made), v);
        graph->release(grads[made]);
    }
    for (size_t i = made; i < n; ++i) graph->release(grads[i]);
    if (made < n) {
        Py_XDECREF(list);
        throw py::error_already_set();
    }
    return py::reinterpret_steal<py::object>(list);
}

void register_higher(py::module_& m) {
    m.def("_grad_sweep", &grad_sweep, py::arg("output"), py::arg("inputs"), py::arg("create_graph"),
          "agrad.grad's sweep on this engine: the gradients of output with respect to inputs, "
          "as floats, or with create_graph as Values (or the node made by hand that stops "
          "it).");
}

}  // namespace agrad::binding
