// An optimizer's parameters (agrad.optim): their data and gradients moved
// between the Values and float64 arrays in one call each way, and plain
// SGD's step in one call.
#include <cmath>
#include <string>
#include <vector>

#include "binding.hpp"

namespace agrad::binding {

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
    // Plain SGD's step, micrograd's `p.data -= lr * p.grad`: float(p.data) -
    // lr * p.grad of each, the IEEE operations of agrad.optim.SGD.step's
    // arrays (no fused multiply-add: -ffp-contract=off), in one call where
    // the arrays' way took five (6.4 us a step of micrograd's demo model,
    // its parameters' data read, multiplied, checked and written back).
    // All or nothing: the index of the first result that is not finite, and
    // nothing written; -1 once every parameter took its new data.
    py::ssize_t descend(double lr) {
        refuse_while_recording(Access::OptimizerRead);
        refuse_while_recording(Access::OptimizerWrite);
        steps_.resize(ids_.size());
        for (size_t i = 0; i < ids_.size(); ++i)
            steps_[i] = graph->value(ids_[i]).as_double() - lr * graph->grad(ids_[i]);
        for (size_t i = 0; i < steps_.size(); ++i)
            if (!std::isfinite(steps_[i])) return static_cast<py::ssize_t>(i);
        for (size_t i = 0; i < ids_.size(); ++i)
            graph->set_value(ids_[i], Number::of_float(steps_[i]));
        return -1;
    }
    size_t size() const { return ids_.size(); }

private:
    py::list values_;  // holds the Values, so that each node stays theirs
    std::vector<NodeId> ids_;
    std::vector<double> steps_;  // descend's new data, kept between steps

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

void register_parameters(py::module_& m) {
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
            .def("zero_grad", &Parameters::zero_grad, "p.grad = 0.0 of each.")
            .def("descend", &Parameters::descend, py::arg("lr"),
                 "p.data = float(p.data) - lr * p.grad of each, if every one is finite: -1; "
                 "else the index of the first that is not, and nothing written.");
        parameters_type = py::object(m.attr("_Parameters")).release().ptr();
    }
    m.attr("_Parameters") = py::reinterpret_borrow<py::object>(parameters_type);
}

}  // namespace agrad::binding
