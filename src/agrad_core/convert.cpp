// Numbers, strings and errors between Python and the engine: the rules of
// agrad.pure.as_number for operands, UTF-8 for labels, and the exception
// Python raises for the same arithmetic on floats.
#include <cerrno>
#include <string>

#include "binding.hpp"

namespace agrad::binding {

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

}  // namespace agrad::binding
