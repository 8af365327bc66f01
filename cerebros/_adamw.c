/* One AdamW step in one pass over the flat vectors: the compiled twin of
 * cerebros.optim's numpy step, giving the same values bit for bit.
 *
 * The numpy step makes thirteen whole-array passes (each numpy call reads and writes every
 * entry); on a network of 80 000 parameters they took a tenth of a mini-batch's time. This
 * loop does the same float operations in the same order on each entry, with the constants
 * rounded to the arrays' precision first as numpy rounds a Python float it combines with a
 * float32 array, and the build disables contracting a * b + c into one fused multiply-add
 * (setup.py: -ffp-contract=off), so both give the same bits.
 *
 * adamw_step(params, grad, m, v, n_decayed, beta1, beta2, decay, eps, step_size)
 *   params, grad, m, v: writable C-contiguous 1-d buffers of one format, float32 ("f") or
 *   float64 ("d"), of one length; grad is only read. n_decayed: how many leading entries of
 *   params weight decay shrinks, 0 <= n_decayed <= length. decay: 1 - learning_rate * weight_decay.
 *   eps: eps times the bias correction of v. step_size: the learning rate with both bias corrections.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* The loop for one float type, compiled for AVX-512 and AVX2 as well as the baseline, picked
 * at load time (GCC's target_clones; the division and square root are what the baseline's
 * four lanes wait on). Only IEEE operations, so every variant gives the same bits. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define VARIANTS __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VARIANTS
#endif

#define DEFINE_STEP(NAME, T, SQRT)                                                            \
    VARIANTS static void                                                                      \
    NAME(T *restrict p, const T *restrict g, T *restrict m, T *restrict v, Py_ssize_t n,    \
         Py_ssize_t n_decayed, double beta1, double beta2, double decay, double eps,            \
         double step_size)                                                                    \
    {                                                                                         \
        const T b1 = (T)beta1, b2 = (T)beta2, rest1 = (T)(1.0 - beta1);                        \
        const T rest2 = (T)(1.0 - beta2), shrink = (T)decay, add = (T)eps;                    \
        const T step = (T)step_size;                                                          \
        for (Py_ssize_t i = 0; i < n; i++) {                                                  \
            T mi = m[i] * b1;                                                                 \
            mi = mi + g[i] * rest1;                                                           \
            T square = g[i] * g[i];                                                           \
            T vi = v[i] * b2;                                                                 \
            vi = vi + square * rest2;                                                         \
            m[i] = mi;                                                                        \
            v[i] = vi;                                                                        \
            T pi = i < n_decayed ? p[i] * shrink : p[i];                                      \
            T update = mi / (SQRT(vi) + add);                                                 \
            p[i] = pi - update * step;                                                        \
        }                                                                                     \
    }

DEFINE_STEP(step_float, float, sqrtf)
DEFINE_STEP(step_double, double, sqrt)

static PyObject *
adamw_step(PyObject *Py_UNUSED(module), PyObject *args)
{
    static const char *const names[4] = {"params", "grad", "m", "v"};
    PyObject *arrays[4];
    Py_ssize_t n_decayed;
    double beta1, beta2, decay, eps, step_size;
    if (!PyArg_ParseTuple(args, "OOOOnddddd:adamw_step", &arrays[0], &arrays[1], &arrays[2], &arrays[3],
                          &n_decayed, &beta1, &beta2, &decay, &eps, &step_size))
        return NULL;
    Py_buffer views[4];
    int held = 0;
    PyObject *result = NULL;
    while (held < 4) {
        Py_buffer *view = &views[held];
        if (PyObject_GetBuffer(arrays[held], view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
            goto done;
        const char *name = names[held++];
        const char *format = view->format;
        if (view->ndim != 1 || format == NULL || (strcmp(format, "f") != 0 && strcmp(format, "d") != 0)) {
            PyErr_Format(PyExc_TypeError, "adamw_step: %s must be a 1-d float32 or float64 array", name);
            goto done;
        }
        if (strcmp(view->format, views[0].format) != 0 || view->len != views[0].len) {
            PyErr_Format(PyExc_ValueError, "adamw_step: %s must have params' dtype and length", name);
            goto done;
        }
    }
    /* the loop reads and writes each array through its own pointer (restrict) */
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++) {
            const uintptr_t a = (uintptr_t)views[i].buf, b = (uintptr_t)views[j].buf, len = (uintptr_t)views[0].len;
            if (len > 0 && a < b + len && b < a + len) {
                PyErr_Format(PyExc_ValueError, "adamw_step: %s and %s share memory", names[i], names[j]);
                goto done;
            }
        }
    const Py_ssize_t n = views[0].len / views[0].itemsize;
    if (n_decayed < 0 || n_decayed > n) {
        PyErr_Format(PyExc_ValueError, "adamw_step: n_decayed must be in [0, %zd], got %zd", n, n_decayed);
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    if (views[0].itemsize == sizeof(float))
        step_float(views[0].buf, views[1].buf, views[2].buf, views[3].buf, n, n_decayed, beta1, beta2, decay, eps,
                   step_size);
    else
        step_double(views[0].buf, views[1].buf, views[2].buf, views[3].buf, n, n_decayed, beta1, beta2, decay, eps,
                    step_size);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    while (held > 0)
        PyBuffer_Release(&views[--held]);
    return result;
}

static PyMethodDef methods[] = {
    {"adamw_step", adamw_step, METH_VARARGS, "One AdamW step over flat float arrays, in place."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "cerebros._adamw",
    "The AdamW step of cerebros.optim.numpy_step, in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__adamw(void)
{
    return PyModule_Create(&module_def);
}
