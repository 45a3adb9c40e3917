// agrad.compile's half in C++: the thread's recording (its log of nodes, its
// guards, whether an operation failed, what was refused), the one check that
// every read or write of a Value's numbers asks while recording, the walk of
// a compiled call's arguments, and CompiledProgram, the Python face of a
// recording's engine Program (program.hpp) with its inputs and guards.
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "agrad/program.hpp"
#include "binding.hpp"

namespace agrad::binding {

PyObject* enum_type = nullptr;        // enum.Enum: an enum argument selects a program, like a str
PyObject* recording_error = nullptr;  // agrad._core.RecordingError, a RuntimeError
// agrad's Python files and the standard library's: a refusal names the user's
// line, not the line of draw_dot or copy.copy that read the data for them
std::vector<std::string> library_dirs;

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
// into a Numbers object that _Program.run reads without Python objects.
struct Numbers {
    std::vector<Number> values;
};

class ArgumentFlattener {
public:
    // With `rebuild`, each key_of also gives the argument as the recording
    // passes it to the function: every number it converted replaced by a new
    // input leaf (in `leaves`, in the order of the numbers), everything else
    // as it was.  So the structure the key describes and the arguments the
    // function sees come from one walk, and cannot disagree.
    ArgumentFlattener(PyObject* ndarray, std::vector<Number>& out, bool rebuild)
        : ndarray_(ndarray), out_(out), number_key_(py::str("n")), rebuild_(rebuild) {
        if (rebuild) leaves = py::list();  // (a replay's call makes no list)
    }

    py::object leaves;  // with rebuild: a list of the input leaves, one per number

    py::object key_of(PyObject* o, py::object* rebuilt) {
        if (rebuild_) *rebuilt = py::reinterpret_borrow<py::object>(o);  // unless replaced below
        PyTypeObject* t = Py_TYPE(o);
        if (t == &PyFloat_Type || t == &PyLong_Type) {
            convert(o);
            if (rebuild_) *rebuilt = leaf(out_.size() - 1);
            return number_key_;
        }
        if (t == &PyList_Type || t == &PyTuple_Type) return sequence_key(o, rebuilt);
        if (reinterpret_cast<PyObject*>(t) == ndarray_) return array_key(o, rebuilt);
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
            if (rebuild_) *rebuilt = leaf(out_.size() - 1);
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

    // A new input leaf holding the number at `index` (made while recording,
    // so the recording holds it), appended to `leaves`.
    py::object leaf(size_t index) {
        py::object v = steal_or_throw(wrap_new(graph->leaf(out_[index])));
        if (PyList_Append(leaves.ptr(), v.ptr()) < 0) throw py::error_already_set();
        return v;
    }

    // A list (or tuple) of new leaves for the numbers from `first` on.
    py::object leaves_from(size_t first, bool as_tuple) {
        const size_t n = out_.size() - first;
        py::list items(n);
        for (size_t i = 0; i < n; ++i) items[i] = leaf(first + i);
        return as_tuple ? py::object(py::tuple(items)) : py::object(items);
    }

    static bool all_plain(PyObject* const* items, Py_ssize_t n) {
        for (Py_ssize_t i = 0; i < n; ++i) {
            PyTypeObject* t = Py_TYPE(items[i]);
            if (t != &PyFloat_Type && t != &PyLong_Type) return false;
        }
        return true;
    }

    // Exact floats and ints (converting them runs no Python code) converted in one pass over the
    // items, which are often scattered in memory, written straight into room made for them (a
    // push_back each, not inlined, cost 4 ns a number); undone at the first item that is not plain.
    bool try_plain(PyObject* const* items, Py_ssize_t n) {
        const size_t mark = out_.size();
        make_room(static_cast<size_t>(n));
        out_.resize(mark + static_cast<size_t>(n));
        Number* to = out_.data() + mark;
        for (Py_ssize_t i = 0; i < n; ++i) {
            PyObject* x = items[i];
            PyTypeObject* t = Py_TYPE(x);
            if (t == &PyFloat_Type) {
                to[i] = Number::of_float(PyFloat_AS_DOUBLE(x));
            } else if (t != &PyLong_Type) {
                out_.resize(mark);
                return false;
            } else if (int_from_pylong(x, &to[i]) < 0) {
                out_.resize(mark);
                throw py::error_already_set();
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

    py::object sequence_key(PyObject* o, py::object* rebuilt) {
        const bool is_tuple = Py_TYPE(o) == &PyTuple_Type;
        const size_t first = out_.size();
        PyObject* type = reinterpret_cast<PyObject*>(Py_TYPE(o));
        // The common cases, plain numbers and rows of them: no Python code
        // runs, so the list is read in place, with no key per item.
        PyObject** fast = PySequence_Fast_ITEMS(o);  // o is an exact list or tuple
        Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
        if (try_plain(fast, n)) {
            if (rebuild_) *rebuilt = leaves_from(first, is_tuple);
            return pair(type, PyLong_FromSsize_t(n));
        }
        Py_ssize_t m = 0;
        if (plain_rows(fast, n, &m)) {
            make_room(static_cast<size_t>(n) * static_cast<size_t>(m));
            for (Py_ssize_t i = 0; i < n; ++i)
                try_plain(PySequence_Fast_ITEMS(fast[i]), m);  // true: plain_rows checked them
            if (rebuild_) {
                const bool rows_are_tuples = Py_TYPE(fast[0]) == &PyTuple_Type;
                py::list rows_rebuilt(static_cast<size_t>(n));
                for (Py_ssize_t i = 0; i < n; ++i) {
                    const size_t start = first + static_cast<size_t>(i * m);
                    py::list row(static_cast<size_t>(m));
                    for (Py_ssize_t j = 0; j < m; ++j)
                        row[static_cast<size_t>(j)] = leaf(start + static_cast<size_t>(j));
                    rows_rebuilt[static_cast<size_t>(i)] = rows_are_tuples
                                                               ? py::object(py::tuple(row))
                                                               : py::object(row);
                }
                *rebuilt = is_tuple ? py::object(py::tuple(rows_rebuilt))
                                    : py::object(rows_rebuilt);
            }
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
        py::list items_rebuilt(rebuild_ ? static_cast<size_t>(n) : 0);
        for (Py_ssize_t i = 0; i < n; ++i) {
            py::object item;
            PyTuple_SET_ITEM(keys.ptr(), i,
                             key_of(PyTuple_GET_ITEM(items.ptr(), i), &item).release().ptr());
            if (rebuild_) items_rebuilt[static_cast<size_t>(i)] = item;
        }
        if (rebuild_)
            *rebuilt = is_tuple ? py::object(py::tuple(items_rebuilt)) : py::object(items_rebuilt);
        return pair(type, keys.release().ptr());
    }

    // A float64 array is read through the buffer protocol, in C order (the
    // order of ravel()); other dtypes of numbers as ravel().tolist() gives them.
    py::object array_key(PyObject* o, py::object* rebuilt) {
        const size_t first = out_.size();
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
        if (rebuild_) {  // an object array of leaves, of the same shape
            py::module_ np = py::module_::import("numpy");
            py::object flat = np.attr("array")(leaves_from(first, false), py::arg("dtype") = "O");
            if (out_.size() == first) flat = np.attr("empty")(0, py::arg("dtype") = "O");
            *rebuilt = flat.attr("reshape")(shape);
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
    bool rebuild_;
};

// (key, numbers) of a call's positional and keyword arguments; with
// `rebuild` (while recording), (key, numbers, args, kwargs, leaves): the
// arguments as the function is given them, their numbers input leaves.
py::tuple flatten_arguments(const py::tuple& args, const py::dict& kwargs, py::handle ndarray,
                            bool rebuild) {
    Numbers numbers;
    ArgumentFlattener flattener(ndarray.ptr(), numbers.values, rebuild);
    const size_t n = args.size();
    py::tuple keys(n);
    py::list args_rebuilt(rebuild ? n : 0);
    for (size_t i = 0; i < n; ++i) {
        py::object arg;
        keys[i] = flattener.key_of(args[i].ptr(), &arg);
        if (rebuild) args_rebuilt[i] = arg;
    }
    py::object key = keys;
    py::dict kwargs_rebuilt;
    if (!kwargs.empty()) {
        // a private copy of the items: converting a number may run Python code
        py::list items = py::reinterpret_steal<py::list>(PyDict_Items(kwargs.ptr()));
        if (!items) throw py::error_already_set();
        py::tuple pairs(items.size());
        for (size_t i = 0; i < items.size(); ++i) {
            py::tuple item = items[i];
            py::object arg;
            pairs[i] = py::make_tuple(item[0], flattener.key_of(item[1].ptr(), &arg));
            if (rebuild) kwargs_rebuilt[item[0]] = arg;
        }
        key = py::make_tuple(keys, pairs);
    }
    py::object converted = py::cast(std::move(numbers));
    if (!rebuild) return py::make_tuple(key, converted);
    return py::make_tuple(key, converted, py::tuple(args_rebuilt), kwargs_rebuilt,
                          flattener.leaves);
}

// A recorded graph: what the binding keeps of it between calls.  The engine's
// Program (program.hpp) replays it, forward and backward; this adds what
// belongs to Python's side: the inputs the arguments' numbers go into, and
// the guards that say whether the recorded graph is still eager code's.
class CompiledProgram {
public:
    // `outputs` are the roots backward() will be called on (agrad::Program).
    CompiledProgram(Recording&& r, std::vector<NodeId> inputs, const std::vector<NodeId>& outputs)
        : program_(*graph, std::move(r.log), outputs, std::move(inputs)),
          guards_(std::move(r.guards)),
          guarded_(std::move(r.guarded)) {}
    CompiledProgram(const CompiledProgram&) = delete;
    CompiledProgram& operator=(const CompiledProgram&) = delete;
    ~CompiledProgram() { release_all(guarded_); }  // pybind11 destroys it with the GIL held

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
    size_t operations() const { return program_.operations(); }
    size_t nodes() const { return program_.nodes(); }
    size_t inputs() const { return program_.inputs().size(); }
    size_t guards() const { return guards_.size(); }

private:
    agrad::Program program_;       // holds the recording's log, one reference a node
    std::vector<Guard> guards_;    // the comparisons made while recording, in order
    std::vector<NodeId> guarded_;  // their nodes, one reference each

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
        const std::vector<NodeId>& inputs = program_.inputs();  // the arguments' numbers go there
        if (n != inputs.size())
            throw py::value_error("agrad.compile: the program has " +
                                  std::to_string(inputs.size()) + " inputs, given " +
                                  std::to_string(n) + " numbers");
        // through the arrays' addresses, taken once: a store to an int mark
        // may alias anything, and set_value would reload them at each input
        Graph::Slot* slots = graph->value_slots();
        uint8_t* ints = graph->int_marks();
        for (size_t i = 0; i < n; ++i) {
            if (values[i].is_int) {
                graph->set_value(inputs[i], values[i]);
            } else {
                slots[inputs[i]].f = values[i].f;
                ints[inputs[i]] = 0;
            }
        }
        // A guard's operands are made before it, so a guard checked after
        // the whole pass reads what eager code would have compared.  An
        // operation that fails is no result either: eager code may catch
        // the error (`except ValueError:`) or never reach the operation (a
        // guard before it flipped).  The caller runs the function again,
        // which raises or not exactly as eager code does.
        if (program_.forward() != Status::Ok) return false;
        return guards_hold();
    }
};

// Ends the recording and makes its program.  The inputs must be leaves made
// during the recording (so that the program holds them); a node made by hand
// with Value(data, children, op) has no operation to replay, and is refused.
// None when an operation raised while recording and the function went on
// (an `except` branch): that call ran eagerly, and its graph is not kept,
// since a replay would take the same branch whatever the numbers.
std::unique_ptr<CompiledProgram> finish_recording(const py::list& inputs, const py::list& outputs) {
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
        return std::make_unique<CompiledProgram>(std::move(*r), std::move(input_ids), output_ids);
    } catch (...) {
        release_recording(*r);
        throw;
    }
}

void register_compile(py::module_& m) {
    if (!recording_error) {  // once per process
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
    }
    m.attr("RecordingError") = py::handle(recording_error);
    m.def(
        "_set_library_dirs", [](std::vector<std::string> dirs) { library_dirs = std::move(dirs); },
        py::arg("dirs"),
        "Where library code lives: a refusal while recording names the first line outside.");
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
        py::class_<CompiledProgram>(m, "_Program", "A recorded graph that agrad.compile replays.")
            .def("run", &CompiledProgram::run_converted, py::arg("numbers"),
                 "Write the numbers into the inputs and recompute every recorded operation; "
                 "False if a guard (a comparison made while recording) came out otherwise.")
            .def("run", &CompiledProgram::run, py::arg("numbers"))
            .def_property_readonly("operations", &CompiledProgram::operations,
                                   "How many operations a replay recomputes.")
            .def_property_readonly("nodes", &CompiledProgram::nodes,
                                   "How many nodes the program holds.")
            .def_property_readonly("inputs", &CompiledProgram::inputs,
                                   "How many inputs the program has.")
            .def_property_readonly("guards", &CompiledProgram::guards,
                                   "How many comparisons a replay checks.");
        program_type = py::object(m.attr("_Program")).release().ptr();
    }
    m.attr("_Program") = py::reinterpret_borrow<py::object>(program_type);
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
          py::arg("rebuild") = false,
          "The structure key of a compiled call's arguments and their numbers; with rebuild "
          "(while recording), also the arguments with their numbers as new input leaves.");
}

}  // namespace agrad::binding
