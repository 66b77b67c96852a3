/* kernelop's native launch: pack the kernel parameters and call cuLaunchKernel, from C.
 *
 * Going through cuda-bindings and struct costs about two microseconds per launch in argument
 * objects. This call reads the launch dims from a tuple, packs the values on its own stack
 * following the layout (struct codes Q, q, i, I, f, d, ?, each aligned to its size, as
 * packing.py documents), and passes plain integers to the driver entry point given once with set_entry.
 * It links to nothing but Python, so it builds with any C compiler and no CUDA headers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_PARAMS 512 /* 4 KiB of 8-byte parameters: the classic kernel parameter limit */

typedef int (*launch_kernel_fn)(void *function, unsigned int grid_x, unsigned int grid_y, unsigned int grid_z,
                                unsigned int block_x, unsigned int block_y, unsigned int block_z,
                                unsigned int shared_mem, void *stream, void **params, void **extra);

static launch_kernel_fn launch_kernel = NULL;

static PyObject *set_entry(PyObject *self, PyObject *address) {
    void *entry = PyLong_AsVoidPtr(address);
    if (entry == NULL && PyErr_Occurred()) return NULL;
    launch_kernel = (launch_kernel_fn)entry;
    Py_RETURN_NONE;
}

/* Write one value at the next offset aligned to its size; returns the new end, or -1 on error. */
static Py_ssize_t pack_one(char code, PyObject *value, unsigned char *data, Py_ssize_t end, void **pointer, Py_ssize_t index) {
    switch (code) {
    case 'Q': {
        end += -end & 7;
        unsigned long long x = PyLong_AsUnsignedLongLong(value);
        if (x == (unsigned long long)-1 && PyErr_Occurred()) return -1;
        memcpy(data + end, &x, 8);
        *pointer = data + end;
        return end + 8;
    }
    case 'q': {
        end += -end & 7;
        long long x = PyLong_AsLongLong(value);
        if (x == -1 && PyErr_Occurred()) return -1;
        memcpy(data + end, &x, 8);
        *pointer = data + end;
        return end + 8;
    }
    case 'I': {
        end += -end & 3;
        unsigned long long x = PyLong_AsUnsignedLongLong(value);
        if (x == (unsigned long long)-1 && PyErr_Occurred()) return -1;
        if (x > UINT32_MAX) {
            PyErr_Format(PyExc_OverflowError, "parameter %zd = %llu does not fit 32 bits", index, x);
            return -1;
        }
        uint32_t narrow = (uint32_t)x;
        memcpy(data + end, &narrow, 4);
        *pointer = data + end;
        return end + 4;
    }
    case 'i': {
        end += -end & 3;
        long long x = PyLong_AsLongLong(value);
        if (x == -1 && PyErr_Occurred()) return -1;
        if (x < INT32_MIN || x > INT32_MAX) {
            PyErr_Format(PyExc_OverflowError, "parameter %zd = %lld does not fit 32 bits", index, x);
            return -1;
        }
        int32_t narrow = (int32_t)x;
        memcpy(data + end, &narrow, 4);
        *pointer = data + end;
        return end + 4;
    }
    case 'f': {
        end += -end & 3;
        double x = PyFloat_AsDouble(value);
        if (x == -1.0 && PyErr_Occurred()) return -1;
        float narrow = (float)x;
        if (isinf(narrow) && !isinf(x)) {
            PyErr_Format(PyExc_OverflowError, "parameter %zd does not fit a 32-bit float", index);
            return -1;
        }
        memcpy(data + end, &narrow, 4);
        *pointer = data + end;
        return end + 4;
    }
    case 'd': {
        end += -end & 7;
        double x = PyFloat_AsDouble(value);
        if (x == -1.0 && PyErr_Occurred()) return -1;
        memcpy(data + end, &x, 8);
        *pointer = data + end;
        return end + 8;
    }
    case '?': {
        int truth = PyObject_IsTrue(value);
        if (truth < 0) return -1;
        data[end] = (unsigned char)truth;
        *pointer = data + end;
        return end + 1;
    }
    default:
        PyErr_Format(PyExc_ValueError, "layout code %c at parameter %zd is not one of Q, q, i, I, f, d, ?", code, index);
        return -1;
    }
}

/* launch(function, dims, stream, layout, *values) -> CUresult as an int.
 * dims starts with grid x, y, z, block x, y, z and shared memory bytes; later items are ignored. */
static PyObject *launch(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    unsigned int dims[7];
    union { uint64_t align; unsigned char bytes[MAX_PARAMS * 8]; } data;
    void *pointers[MAX_PARAMS];
    if (nargs < 4) {
        PyErr_Format(PyExc_TypeError, "launch(function, dims, stream, layout, *values) takes at least 4 arguments (got %zd)", nargs);
        return NULL;
    }
    if (launch_kernel == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "launch: no driver entry point; call set_entry first");
        return NULL;
    }
    if (!PyTuple_Check(args[1]) || PyTuple_GET_SIZE(args[1]) < 7) {
        PyErr_SetString(PyExc_TypeError, "launch: dims must be a tuple of at least 7 ints");
        return NULL;
    }
    if (!PyBytes_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "launch: layout must be bytes");
        return NULL;
    }
    Py_ssize_t count = PyBytes_GET_SIZE(args[3]);
    const char *codes = PyBytes_AS_STRING(args[3]);
    if (count != nargs - 4) {
        PyErr_Format(PyExc_TypeError, "launch: the layout has %zd parameters but %zd values were given", count, nargs - 4);
        return NULL;
    }
    if (count > MAX_PARAMS) {
        PyErr_Format(PyExc_ValueError, "launch: %zd parameters; at most %d are supported", count, MAX_PARAMS);
        return NULL;
    }
    for (int i = 0; i < 7; i++) {
        unsigned long value = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(args[1], i));
        if (value == (unsigned long)-1 && PyErr_Occurred()) return NULL;
        if (value > UINT_MAX) {
            PyErr_Format(PyExc_OverflowError, "launch: dims[%d] = %lu does not fit 32 bits", i, value);
            return NULL;
        }
        dims[i] = (unsigned int)value;
    }
    void *function = PyLong_AsVoidPtr(args[0]);
    void *stream = PyLong_AsVoidPtr(args[2]);
    if (PyErr_Occurred()) return NULL;
    Py_ssize_t end = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        end = pack_one(codes[i], args[4 + i], data.bytes, end, &pointers[i], i);
        if (end < 0) return NULL;
    }
    int result;
    Py_BEGIN_ALLOW_THREADS
    result = launch_kernel(function, dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], stream,
                           count ? pointers : NULL, NULL);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(result);
}

static PyMethodDef methods[] = {
    {"set_entry", set_entry, METH_O, "Set the address of the driver's cuLaunchKernel."},
    {"launch", (PyCFunction)(void (*)(void))launch, METH_FASTCALL, "launch(function, dims, stream, layout, *values) -> int"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_launch_shim", NULL, -1, methods};

PyMODINIT_FUNC PyInit__launch_shim(void) { return PyModule_Create(&module); }
