/* kernelop's native launch: cuLaunchKernel called straight from the eager hot path.
 *
 * Going through cuda-bindings costs about a microsecond per launch in argument objects; this
 * call reads the launch dims from a tuple and passes plain integers to the driver entry point
 * given once with set_entry. It holds no state besides that pointer and links to nothing but
 * Python, so it builds with any C compiler and no CUDA headers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>

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

/* launch(function, dims, stream, params) -> CUresult as an int.
 * dims starts with grid x, y, z, block x, y, z and shared memory bytes; later items are ignored. */
static PyObject *launch(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    unsigned int dims[7];
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "launch(function, dims, stream, params) takes 4 arguments (got %zd)", nargs);
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
    void **params = (void **)PyLong_AsVoidPtr(args[3]);
    if (PyErr_Occurred()) return NULL;
    int result;
    Py_BEGIN_ALLOW_THREADS
    result = launch_kernel(function, dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], stream, params, NULL);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(result);
}

static PyMethodDef methods[] = {
    {"set_entry", set_entry, METH_O, "Set the address of the driver's cuLaunchKernel."},
    {"launch", (PyCFunction)(void (*)(void))launch, METH_FASTCALL, "launch(function, dims, stream, params) -> int"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_launch_shim", NULL, -1, methods};

PyMODINIT_FUNC PyInit__launch_shim(void) { return PyModule_Create(&module); }
