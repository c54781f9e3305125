/* Small float32 kernels whose speed depends on the CPU target they were
 * compiled for: -march=x86-64 gives SSE2 (xmm), -march=haswell gives AVX2 +
 * FMA (ymm, vfmadd*).  The loops are plain C so the compiler's vectoriser does
 * the work; the build's CFLAGS decide which instructions it may use. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static int get_f32(PyObject *obj, Py_buffer *view, int writable, const char *name)
{
    int flags = PyBUF_FORMAT | PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) != 0)
        return -1;
    if (view->itemsize != 4 || view->format == NULL || strcmp(view->format, "f") != 0) {
        PyErr_Format(PyExc_TypeError, "%s: expected a contiguous float32 buffer (format 'f'), got format '%s'",
                     name, view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Reduction: vectorised because the build allows reassociation for this file. */
static float dot_kernel(const float *restrict x, const float *restrict y, Py_ssize_t n)
{
    float acc = 0.0f;
    for (Py_ssize_t i = 0; i < n; i++)
        acc += x[i] * y[i];
    return acc;
}

static void saxpy_kernel(float a, const float *restrict x, float *restrict y, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        y[i] = a * x[i] + y[i];
}

static PyObject *py_dot(PyObject *self, PyObject *args)
{
    PyObject *xo, *yo;
    Py_ssize_t repeat = 1;
    Py_buffer xv, yv;
    if (!PyArg_ParseTuple(args, "OO|n:dot", &xo, &yo, &repeat))
        return NULL;
    if (repeat < 1) {
        PyErr_SetString(PyExc_ValueError, "dot: repeat must be >= 1");
        return NULL;
    }
    if (get_f32(xo, &xv, 0, "dot x") != 0)
        return NULL;
    if (get_f32(yo, &yv, 0, "dot y") != 0) {
        PyBuffer_Release(&xv);
        return NULL;
    }
    if (xv.len != yv.len) {
        PyErr_Format(PyExc_ValueError, "dot: x has %zd floats but y has %zd", xv.len / 4, yv.len / 4);
        PyBuffer_Release(&xv);
        PyBuffer_Release(&yv);
        return NULL;
    }
    Py_ssize_t n = xv.len / 4;
    double total = 0.0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < repeat; r++)
        total += dot_kernel((const float *)xv.buf, (const float *)yv.buf, n);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&xv);
    PyBuffer_Release(&yv);
    return PyFloat_FromDouble(total / (double)repeat);
}

static PyObject *py_saxpy(PyObject *self, PyObject *args)
{
    float a;
    PyObject *xo, *yo;
    Py_ssize_t repeat = 1;
    Py_buffer xv, yv;
    if (!PyArg_ParseTuple(args, "fOO|n:saxpy", &a, &xo, &yo, &repeat))
        return NULL;
    if (repeat < 1) {
        PyErr_SetString(PyExc_ValueError, "saxpy: repeat must be >= 1");
        return NULL;
    }
    if (get_f32(xo, &xv, 0, "saxpy x") != 0)
        return NULL;
    if (get_f32(yo, &yv, 1, "saxpy y") != 0) {
        PyBuffer_Release(&xv);
        return NULL;
    }
    if (xv.len != yv.len) {
        PyErr_Format(PyExc_ValueError, "saxpy: x has %zd floats but y has %zd", xv.len / 4, yv.len / 4);
        PyBuffer_Release(&xv);
        PyBuffer_Release(&yv);
        return NULL;
    }
    Py_ssize_t n = xv.len / 4;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < repeat; r++)
        saxpy_kernel(a, (const float *)xv.buf, (float *)yv.buf, n);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&xv);
    PyBuffer_Release(&yv);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"dot", py_dot, METH_VARARGS, "dot(x, y, repeat=1) -> float: float32 dot product (mean over repeats)."},
    {"saxpy", py_saxpy, METH_VARARGS, "saxpy(a, x, y, repeat=1): y <- a*x + y in place, repeat times."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void)
{
    return PyModule_Create(&module);
}
