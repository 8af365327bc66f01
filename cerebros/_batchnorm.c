/* Batch normalisation's training passes over one node's (rows, width) output: the compiled
 * twin of cerebros.batchnorm's numpy passes, giving the same values bit for bit.
 *
 * The numpy passes make fifteen calls forward and eight backward per node and mini-batch; on
 * a 74 x 124 float32 batch they took 30 and 33 us, about what the node's matrix products
 * take. Here each direction is one call over the rows. The sums run row after row, each
 * column starting from its first row, as cerebros.batchnorm.column_sums does; constants are
 * rounded to the arrays' precision first, as numpy rounds a Python float it combines with a
 * float32 array; the build disables contracting a * b + c into a fused multiply-add
 * (setup.py: -ffp-contract=off). So both give the same bits.
 *
 * forward(values, out, inv_std, running_mean, running_var, rest, eps)
 *   values, out: (rows, width), rows >= 1; inv_std, running_mean, running_var: (width,).
 *   out = (values - mean) * inv_std, inv_std = 1 / sqrt(var + eps) with the batch's mean and
 *   (biased) variance; running = running + rest * (batch - running) for both statistics.
 * backward(d_out, xhat, inv_std, out)
 *   d_out, xhat, out: (rows, width); inv_std: (width,). out = the loss's gradient with respect
 *   to the node's values, given d_out = its gradient with respect to xhat, the standardised values.
 * Every array is float32 ("f") or float64 ("d"), all of one format; a 2-d array's rows may be
 * spaced apart (a column slice), but its entries within a row must be adjacent. The arrays a
 * call writes share no memory with any other of its arrays.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* As in _adamw.c: each loop compiled for AVX-512 and AVX2 as well as the baseline, picked at
 * load time; only IEEE operations, so every variant gives the same bits. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define VARIANTS __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VARIANTS
#endif

/* One row of a 2-d buffer whose rows are `stride` bytes apart. */
#define ROW(T, base, stride, i) ((T *)((char *)(base) + (i) * (stride)))

#define DEFINE_PASSES(FORWARD, BACKWARD, T, SQRT)                                             \
    VARIANTS static void                                                                      \
    FORWARD(const T *values, Py_ssize_t values_stride, T *out, Py_ssize_t out_stride,         \
            T *restrict inv_std, T *restrict running_mean, T *restrict running_var,           \
            T *restrict sums, Py_ssize_t rows, Py_ssize_t width, double rest, double eps)     \
    {                                                                                         \
        const T r = (T)rest, e = (T)eps, count = (T)rows, one = (T)1.0;                       \
        T *restrict mean = sums, *restrict var = sums + width;                                \
        memcpy(mean, values, (size_t)width * sizeof(T));                                      \
        for (Py_ssize_t i = 1; i < rows; i++) {                                               \
            const T *restrict v = ROW(const T, values, values_stride, i);                     \
            for (Py_ssize_t j = 0; j < width; j++)                                            \
                mean[j] = mean[j] + v[j];                                                     \
        }                                                                                     \
        for (Py_ssize_t j = 0; j < width; j++)                                                \
            mean[j] = mean[j] / count;                                                        \
        for (Py_ssize_t i = 0; i < rows; i++) {                                               \
            const T *restrict v = ROW(const T, values, values_stride, i);                     \
            T *restrict o = ROW(T, out, out_stride, i);                                       \
            for (Py_ssize_t j = 0; j < width; j++) {                                          \
                const T centred = v[j] - mean[j];                                             \
                const T square = centred * centred;                                           \
                o[j] = centred;                                                               \
                var[j] = i == 0 ? square : var[j] + square;                                   \
            }                                                                                 \
        }                                                                                     \
        for (Py_ssize_t j = 0; j < width; j++) {                                              \
            const T batch_var = var[j] / count;                                               \
            running_mean[j] = running_mean[j] + r * (mean[j] - running_mean[j]);              \
            running_var[j] = running_var[j] + r * (batch_var - running_var[j]);              \
            inv_std[j] = one / SQRT(batch_var + e);                                           \
        }                                                                                     \
        for (Py_ssize_t i = 0; i < rows; i++) {                                               \
            T *restrict o = ROW(T, out, out_stride, i);                                       \
            for (Py_ssize_t j = 0; j < width; j++)                                            \
                o[j] = o[j] * inv_std[j];                                                     \
        }                                                                                     \
    }                                                                                         \
                                                                                              \
    VARIANTS static void                                                                      \
    BACKWARD(const T *d_out, Py_ssize_t d_stride, const T *xhat, Py_ssize_t xhat_stride,      \
             const T *restrict inv_std, T *out, Py_ssize_t out_stride, T *restrict sums,      \
             Py_ssize_t rows, Py_ssize_t width)                                               \
    {                                                                                         \
        const T count = (T)rows;                                                              \
        T *restrict sum_d = sums, *restrict sum_dx = sums + width;                            \
        for (Py_ssize_t i = 0; i < rows; i++) {                                               \
            const T *restrict d = ROW(const T, d_out, d_stride, i);                           \
            const T *restrict x = ROW(const T, xhat, xhat_stride, i);                         \
            for (Py_ssize_t j = 0; j < width; j++) {                                          \
                const T product = d[j] * x[j];                                                \
                sum_d[j] = i == 0 ? d[j] : sum_d[j] + d[j];                                   \
                sum_dx[j] = i == 0 ? product : sum_dx[j] + product;                           \
            }                                                                                 \
        }                                                                                     \
        for (Py_ssize_t j = 0; j < width; j++) {                                              \
            sum_d[j] = sum_d[j] / count;                                                      \
            sum_dx[j] = sum_dx[j] / count;                                                    \
        }                                                                                     \
        for (Py_ssize_t i = 0; i < rows; i++) {                                               \
            const T *restrict d = ROW(const T, d_out, d_stride, i);                           \
            const T *restrict x = ROW(const T, xhat, xhat_stride, i);                         \
            T *restrict o = ROW(T, out, out_stride, i);                                       \
            for (Py_ssize_t j = 0; j < width; j++) {                                          \
                const T shifted = d[j] - sum_d[j];                                            \
                o[j] = (shifted - x[j] * sum_dx[j]) * inv_std[j];                             \
            }                                                                                 \
        }                                                                                     \
    }

DEFINE_PASSES(forward_float, backward_float, float, sqrtf)
DEFINE_PASSES(forward_double, backward_double, double, sqrt)

/* The arrays of one call: Python objects in, buffers out, with their names for errors. */
typedef struct {
    const char *call;
    int count;
    const char *const *names;
    const int *writable;
    const int *dims; /* 2 or 1 */
    Py_buffer views[5];
    int held;
    void *sums; /* scratch: two sums per column */
} Arrays;

static void
release(Arrays *a)
{
    PyMem_Free(a->sums);
    a->sums = NULL;
    while (a->held > 0)
        PyBuffer_Release(&a->views[--a->held]);
}

/* The first byte past a buffer's last entry. */
static uintptr_t
end_of(const Py_buffer *view)
{
    if (view->ndim == 1)
        return (uintptr_t)view->buf + (uintptr_t)view->len;
    return (uintptr_t)view->buf + (uintptr_t)((view->shape[0] - 1) * view->strides[0] + view->shape[1] * view->itemsize);
}

/* Take every buffer and check it: its format, its dimensions, rows of one shape, widths that
 * agree, and no array written sharing memory with another; then allocate the scratch.
 * 0 on success, -1 with an error set (release() then frees what was taken). */
static int
acquire(Arrays *a, PyObject *const *objects)
{
    for (int k = 0; k < a->count; k++) {
        Py_buffer *view = &a->views[k];
        const int flags = PyBUF_FORMAT | PyBUF_STRIDES | (a->writable[k] ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(objects[k], view, flags) < 0)
            return -1;
        a->held++;
        const char *format = view->format;
        if (view->ndim != a->dims[k] || format == NULL || (strcmp(format, "f") != 0 && strcmp(format, "d") != 0)) {
            PyErr_Format(PyExc_TypeError, "%s: %s must be a %d-d float32 or float64 array", a->call, a->names[k],
                         a->dims[k]);
            return -1;
        }
        if (strcmp(format, a->views[0].format) != 0) {
            PyErr_Format(PyExc_TypeError, "%s: %s must have %s's dtype", a->call, a->names[k], a->names[0]);
            return -1;
        }
        const Py_ssize_t width = view->shape[view->ndim - 1];
        if ((width > 1 && view->strides[view->ndim - 1] != view->itemsize)
            || (view->ndim == 2 && view->shape[0] > 1 && view->strides[0] < width * view->itemsize)) {
            PyErr_Format(PyExc_ValueError, "%s: %s must hold each row's entries adjacent, rows apart and in order",
                         a->call, a->names[k]);
            return -1;
        }
        if (width != a->views[0].shape[1] || (view->ndim == 2 && view->shape[0] != a->views[0].shape[0])) {
            PyErr_Format(PyExc_ValueError, "%s: %s's shape does not match %s's", a->call, a->names[k], a->names[0]);
            return -1;
        }
    }
    if (a->views[0].shape[0] < 1 || a->views[0].shape[1] < 1) {
        PyErr_Format(PyExc_ValueError, "%s: %s must have at least one row and one column", a->call, a->names[0]);
        return -1;
    }
    for (int i = 0; i < a->count; i++)
        for (int j = 0; j < a->count; j++) {
            const uintptr_t start_i = (uintptr_t)a->views[i].buf, start_j = (uintptr_t)a->views[j].buf;
            if (i != j && a->writable[i] && start_i < end_of(&a->views[j]) && start_j < end_of(&a->views[i])) {
                PyErr_Format(PyExc_ValueError, "%s: %s and %s share memory", a->call, a->names[i < j ? i : j],
                             a->names[i < j ? j : i]);
                return -1;
            }
        }
    if ((a->sums = PyMem_Malloc((size_t)(2 * a->views[0].shape[1] * a->views[0].itemsize))) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *
forward(PyObject *Py_UNUSED(module), PyObject *args)
{
    static const char *const names[5] = {"values", "out", "inv_std", "running_mean", "running_var"};
    static const int writable[5] = {0, 1, 1, 1, 1}, dims[5] = {2, 2, 1, 1, 1};
    PyObject *objects[5];
    double rest, eps;
    if (!PyArg_ParseTuple(args, "OOOOOdd:forward", &objects[0], &objects[1], &objects[2], &objects[3], &objects[4],
                          &rest, &eps))
        return NULL;
    Arrays a = {"forward", 5, names, writable, dims, {{0}}, 0, NULL};
    if (acquire(&a, objects) < 0) {
        release(&a);
        return NULL;
    }
    const Py_buffer *v = a.views;
    Py_BEGIN_ALLOW_THREADS
    if (v[0].itemsize == sizeof(float))
        forward_float(v[0].buf, v[0].strides[0], v[1].buf, v[1].strides[0], v[2].buf, v[3].buf, v[4].buf, a.sums,
                      v[0].shape[0], v[0].shape[1], rest, eps);
    else
        forward_double(v[0].buf, v[0].strides[0], v[1].buf, v[1].strides[0], v[2].buf, v[3].buf, v[4].buf, a.sums,
                       v[0].shape[0], v[0].shape[1], rest, eps);
    Py_END_ALLOW_THREADS
    release(&a);
    Py_RETURN_NONE;
}

static PyObject *
backward(PyObject *Py_UNUSED(module), PyObject *args)
{
    static const char *const names[4] = {"d_out", "xhat", "inv_std", "out"};
    static const int writable[4] = {0, 0, 0, 1}, dims[4] = {2, 2, 1, 2};
    PyObject *objects[4];
    if (!PyArg_ParseTuple(args, "OOOO:backward", &objects[0], &objects[1], &objects[2], &objects[3]))
        return NULL;
    Arrays a = {"backward", 4, names, writable, dims, {{0}}, 0, NULL};
    if (acquire(&a, objects) < 0) {
        release(&a);
        return NULL;
    }
    const Py_buffer *v = a.views;
    Py_BEGIN_ALLOW_THREADS
    if (v[0].itemsize == sizeof(float))
        backward_float(v[0].buf, v[0].strides[0], v[1].buf, v[1].strides[0], v[2].buf, v[3].buf, v[3].strides[0],
                       a.sums, v[0].shape[0], v[0].shape[1]);
    else
        backward_double(v[0].buf, v[0].strides[0], v[1].buf, v[1].strides[0], v[2].buf, v[3].buf, v[3].strides[0],
                        a.sums, v[0].shape[0], v[0].shape[1]);
    Py_END_ALLOW_THREADS
    release(&a);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"forward", forward, METH_VARARGS, "Batch norm's training forward pass over one node's output, in place."},
    {"backward", backward, METH_VARARGS, "Batch norm's backward pass over one node's output gradient."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "cerebros._batchnorm",
    "The batch-norm passes of cerebros.batchnorm, in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__batchnorm(void)
{
    return PyModule_Create(&module_def);
}
