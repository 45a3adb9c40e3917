// agrad.sum and agrad.dot: a chain of additions (of products) as one node,
// with the builtin chain's data and gradients.
#include <string>
#include <vector>

#include "binding.hpp"

namespace agrad::binding {

// -- agrad.sum and agrad.dot (pybind11 functions)
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

void register_fused(py::module_& m) {
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
}

}  // namespace agrad::binding
