/* codec._cencode: the External Term Format encoder of codec.encoder, in C.
 *
 * `encode` takes the same arguments and gives the same bytes and exceptions
 * as its pure-Python counterpart in codec/encoder.py, which stays the
 * reference. This file writes the common terms itself: exact int, float,
 * Atom, bytes, str (as a binary or a charlist), bool, None, list, tuple,
 * dict and Map. It hands back to Python:
 *   - every other known kind of term (subclasses of the above, bytearray,
 *     memoryview, ImproperList, BitBinary, Pid, Port, Reference, Export, Fun,
 *     Opaque, stock ErlPort's values: see codec.stock), one object at a time,
 *     to codec.encoder._Encoder.other, whose written bytes it copies and
 *     whose opened items it then walks itself;
 *   - the keys of a map that need Python's rules: sorting (`deterministic`)
 *     and a dict whose keys are of several types (distinct Python keys may
 *     be one Erlang key), to _Encoder.map_pairs; integers beyond 64 bits, to
 *     codec.encoder._big; compression, to codec.encoder._compress;
 *   - calls whose arguments are not the plain ones (positional or unknown
 *     keywords, options that are not exact bools/ints/strs), whole.
 * Errors it does not hand back: it raises the reference's EncodeError itself
 * (through _Encoder.fail, with the path made from its own stack of open
 * containers, each knowing what opened it), so no user code (`default`,
 * __index__, a subclass's __iter__) runs twice. It writes a list as the
 * reference does: its items as they are once bulk_list's bytes() ran (walked
 * in place while writing them runs no Python code, the rest copied before
 * any does, so a later `default` or another thread cannot tear the frame). Other
 * exceptions (from `default`, from a subclass's methods, KeyboardInterrupt,
 * MemoryError) propagate unchanged, except RecursionError, which becomes the
 * same EncodeError the Python function makes of it.
 *
 * `plain_encode` is codec.plain.reference_encode: this encoder with
 * plain._default as `default`.
 *
 * Like the Python encoder it is one loop with an explicit stack of open
 * containers (on the heap once deeper than a few levels), so nesting depth
 * is limited by MAX_DEPTH only, which also stops a cycle. The output grows in one bytes object, which is
 * shrunk to size and returned.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

enum {
    VERSION = 131,
    SMALL_INTEGER_EXT = 97,
    INTEGER_EXT = 98,
    SMALL_BIG_EXT = 110,
    NEW_FLOAT_EXT = 70,
    ATOM_EXT = 100,
    SMALL_ATOM_UTF8_EXT = 119,
    ATOM_UTF8_EXT = 118,
    SMALL_TUPLE_EXT = 104,
    LARGE_TUPLE_EXT = 105,
    MAP_EXT = 116,
    NIL_EXT = 106,
    STRING_EXT = 107,
    LIST_EXT = 108,
    BINARY_EXT = 109,
};

#define MAX_STRING_EXT 0xFFFF     /* longest list written as STRING_EXT */
#define MAX_ATOM_CHARS 255
#define MAX_U32 0xFFFFFFFFLL      /* lengths beyond this make Python's struct.pack fail */
#define HELPER_CACHE_LIMIT 64     /* as codec.encoder._ENCODER_CACHE_LIMIT */
#define MAX_DEPTH 200000          /* as codec.encoder.MAX_DEPTH */
#define BULK_MIN 32               /* as codec.encoder._BULK_MIN */

/* What the encoding functions return. */
#define DONE 0
#define RAISE (-1)    /* an exception is set: the reference's EncodeError, or one to propagate */

/* ---- Python objects this module works with, looked up once at import ---- */

static PyObject *py_encode, *py_compress, *py_big, *py_encoder_class, *EncodeError;
static PyObject *py_tag_u32, *py_refuse_depth;   /* codec.encoder's, for the same errors */
static PyObject *py_stock_kind;   /* codec.stock.stock_kind */
static PyTypeObject *AtomType, *MapType;
static PyObject *known_types;   /* what _Encoder.other writes without calling `default` */
static PyObject *helpers;       /* settings tuple -> _Encoder, for delegated terms */
static PyObject *str_binary, *str_charlist, *str_nil, *str_true, *str_false;
static PyObject *str_other, *str_map_pairs, *str_entries, *str_append, *str_fail, *str_name;

enum { KW_MINOR_VERSION, KW_COMPRESSED, KW_DETERMINISTIC, KW_STR_AS, KW_NONE_AS, KW_DEFAULT,
       KW_COUNT };
/* encode's keywords, and codec.plain.encode's (str_as is `strings`, none_as is
 * `none`, and there is no `default`: plain._default is). */
static PyObject *keyword_names[KW_COUNT], *plain_keyword_names[KW_COUNT];
/* codec.plain's, imported on the first plain call (codec.plain imports this module). */
static PyObject *py_plain_encode, *py_plain_default, *py_plain_refusal, *PlainRefused;
static PyObject *str_undefined;

/* ---- The state of one encoding run ---- */

typedef enum { WALK_TUPLE, WALK_LIST, WALK_REFS, WALK_ITER } WalkKind;

/* One open container: what is left of it to write. */
typedef struct {
    WalkKind kind;
    PyObject *source;   /* the tuple, list or iterator (strong); NULL for WALK_REFS */
    Py_ssize_t index;   /* tuple, list: next index; refs: where its slots start */
    PyObject *owner;    /* what opened it, for error paths as the reference's `owner` (strong) */
    int trailer;        /* a list: NIL_EXT follows its elements */
} Frame;

#define INLINE_FRAMES 32
#define INLINE_REFS 64

typedef struct {
    int minor_version, deterministic, charlists;
    PyObject *none_as;    /* exact str */
    PyObject *default_;   /* callable or NULL */
    PyObject *helper;     /* the _Encoder for delegated terms, made on first need */

    PyObject *out;        /* the bytes object being filled */
    Py_ssize_t used, capacity;

    Frame *frames;
    Py_ssize_t depth, frames_capacity;
    /* The reference's view of the open containers (see python_stack), made
     * on first need: its root entry, then one per frame up to ``synced``. */
    PyObject *python_stack;
    Py_ssize_t synced;
    /* Strong references to the items of lists, maps and `default` results
     * still to write, taken when they open (as Python copies a list and
     * snapshots a map's items); a WALK_REFS frame pops its items off the top. */
    PyObject **refs;
    Py_ssize_t refs_used, refs_capacity;

    Frame inline_frames[INLINE_FRAMES];
    PyObject *inline_refs[INLINE_REFS];
} Encoder;

/* ---- Output ---- */

static int
reserve(Encoder *e, Py_ssize_t n)
{
    if (n <= e->capacity - e->used)
        return DONE;
    if (n > PY_SSIZE_T_MAX / 2 - e->used) {
        PyErr_NoMemory();
        return RAISE;
    }
    Py_ssize_t needed = e->used + n;
    Py_ssize_t grown = e->capacity < PY_SSIZE_T_MAX / 4 ? 2 * e->capacity : needed;
    if (grown < needed)
        grown = needed;
    if (_PyBytes_Resize(&e->out, grown) < 0)
        return RAISE;
    e->capacity = grown;
    return DONE;
}

static inline unsigned char *
cursor(Encoder *e)
{
    return (unsigned char *)PyBytes_AS_STRING(e->out) + e->used;
}

static inline void
put_u8(Encoder *e, unsigned value)
{
    cursor(e)[0] = (unsigned char)value;
    e->used += 1;
}

static inline void
put_u16(Encoder *e, unsigned value)
{
    unsigned char *p = cursor(e);
    p[0] = (unsigned char)(value >> 8);
    p[1] = (unsigned char)value;
    e->used += 2;
}

static inline void
put_u32(Encoder *e, uint32_t value)
{
    unsigned char *p = cursor(e);
    p[0] = (unsigned char)(value >> 24);
    p[1] = (unsigned char)(value >> 16);
    p[2] = (unsigned char)(value >> 8);
    p[3] = (unsigned char)value;
    e->used += 4;
}

static inline void
put_bytes(Encoder *e, const void *data, Py_ssize_t size)
{
    memcpy(cursor(e), data, (size_t)size);
    e->used += size;
}

/* A tag and a 32-bit length: LIST_EXT, BINARY_EXT, MAP_EXT, LARGE_TUPLE_EXT. */
static int
write_header(Encoder *e, unsigned tag, Py_ssize_t length)
{
    if ((long long)length > MAX_U32) {
        /* Python's struct.pack raises its struct.error for this length. */
        PyObject *packed = PyObject_CallFunction(py_tag_u32, "In", tag, length);
        Py_XDECREF(packed);
        return RAISE;
    }
    if (reserve(e, 5) < 0)
        return RAISE;
    put_u8(e, tag);
    put_u32(e, (uint32_t)length);
    return DONE;
}

/* Append the bytes-like objects Python wrote (``pieces``, a list). */
static int
write_pieces(Encoder *e, PyObject *pieces)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pieces); i++) {
        Py_buffer view;
        if (PyObject_GetBuffer(PyList_GET_ITEM(pieces, i), &view, PyBUF_SIMPLE) < 0)
            return RAISE;
        int rc = reserve(e, view.len);
        if (rc == DONE)
            put_bytes(e, view.buf, view.len);
        PyBuffer_Release(&view);
        if (rc != DONE)
            return rc;
    }
    return DONE;
}

/* ---- Errors: the reference's, from the open containers ---- */

static PyObject *get_helper(Encoder *e);

/* The root and the first ``count`` open containers as the reference's
 * ``stack`` (a list of (items, trailer, owner) of which it reads the owner);
 * kept between calls and brought up to date, so a deep term costs no more
 * than a shallow one. A new reference. */
static PyObject *
python_stack(Encoder *e, Py_ssize_t count)
{
    if (e->python_stack == NULL) {
        e->python_stack = Py_BuildValue("[(OOO)]", Py_None, Py_None, Py_None);
        e->synced = 0;
        if (e->python_stack == NULL)
            return NULL;
    }
    if (e->synced > count)
        e->synced = count;
    if (PyList_SetSlice(e->python_stack, e->synced + 1, PY_SSIZE_T_MAX, NULL) < 0)
        return NULL;
    for (; e->synced < count; e->synced++) {
        PyObject *entry = PyTuple_Pack(3, Py_None, Py_None, e->frames[e->synced].owner);
        int appended = entry == NULL ? -1 : PyList_Append(e->python_stack, entry);
        Py_XDECREF(entry);
        if (appended < 0)
            return NULL;
    }
    Py_INCREF(e->python_stack);
    return e->python_stack;
}

/* The reference's (stack, owner) for an item of the innermost open
 * container: a new list, and the owner borrowed in *owner. */
static PyObject *
current_stack(Encoder *e, PyObject **owner)
{
    *owner = e->depth > 0 ? e->frames[e->depth - 1].owner : Py_None;
    return python_stack(e, e->depth > 0 ? e->depth - 1 : 0);
}

/* Raise the reference's EncodeError for ``obj`` (in the innermost open
 * container): _Encoder.fail with ``message`` (a new reference, or NULL if
 * making it failed) and the open containers. Returns RAISE. */
static int
refuse(Encoder *e, PyObject *message, PyObject *obj)
{
    PyObject *helper = message == NULL ? NULL : get_helper(e);
    PyObject *owner;
    PyObject *stack = helper == NULL ? NULL : current_stack(e, &owner);
    if (stack != NULL) {
        PyObject *returned = PyObject_CallMethodObjArgs(helper, str_fail, message, obj, stack,
                                                        owner, NULL);
        Py_XDECREF(returned);   /* fail() always raises */
        Py_DECREF(stack);
    }
    Py_XDECREF(message);
    return RAISE;
}

/* The message of a str or atom not encodable as UTF-8, if that is why
 * encoding it failed (else NULL, the exception left to propagate). */
static PyObject *
not_utf8(const char *what)
{
    if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
        return NULL;
    PyErr_Clear();
    return PyUnicode_FromFormat("%s is not encodable as UTF-8", what);
}

/* ---- Open containers ---- */
/* Make room for one more element of an array that starts out inline. */
static int
grow(void **array, void *inline_array, Py_ssize_t *capacity, size_t item_size)
{
    if ((size_t)*capacity > (size_t)PY_SSIZE_T_MAX / 2 / item_size) {
        PyErr_NoMemory();
        return RAISE;
    }
    Py_ssize_t larger = 2 * *capacity;
    void *moved;
    if (*array == inline_array) {
        moved = PyMem_Malloc((size_t)larger * item_size);
        if (moved != NULL)
            memcpy(moved, inline_array, (size_t)*capacity * item_size);
    }
    else {
        moved = PyMem_Realloc(*array, (size_t)larger * item_size);
    }
    if (moved == NULL) {
        PyErr_NoMemory();
        return RAISE;
    }
    *array = moved;
    *capacity = larger;
    return DONE;
}


/* Open a container opened by ``owner``; takes over the reference to
 * ``source``. Deeper than MAX_DEPTH (a cycle, say) is refused as the
 * reference refuses it, unless ``unbounded`` (a list the reference writes
 * whole, without opening it). */
static int
push_frame(Encoder *e, WalkKind kind, PyObject *source, Py_ssize_t index, PyObject *owner,
           int unbounded)
{
    if (e->depth >= MAX_DEPTH && !unbounded) {
        Py_XDECREF(source);
        PyObject *stack = python_stack(e, e->depth);
        if (stack != NULL) {
            PyObject *returned = PyObject_CallFunctionObjArgs(py_refuse_depth, stack, owner,
                                                              NULL);
            Py_XDECREF(returned);   /* _refuse_depth always raises */
            Py_DECREF(stack);
        }
        return RAISE;
    }
    if (e->depth == e->frames_capacity
            && grow((void **)&e->frames, e->inline_frames, &e->frames_capacity,
                    sizeof(Frame)) < 0) {
        Py_XDECREF(source);
        return RAISE;
    }
    Py_INCREF(owner);
    e->frames[e->depth++] = (Frame){kind, source, index, owner, 0};
    return DONE;
}

/* Keep ``item`` (a new reference, taken over) to write later. */
static int
push_ref(Encoder *e, PyObject *item)
{
    if (e->refs_used == e->refs_capacity
            && grow((void **)&e->refs, e->inline_refs, &e->refs_capacity,
                    sizeof(PyObject *)) < 0) {
        Py_DECREF(item);
        return RAISE;
    }
    e->refs[e->refs_used++] = item;
    return DONE;
}

/* Open the refs pushed since ``start`` as one container opened by
 * ``owner``, first pushed first written (``unbounded``: see push_frame). */
static int
open_refs(Encoder *e, Py_ssize_t start, PyObject *owner, int unbounded)
{
    for (Py_ssize_t low = start, high = e->refs_used - 1; low < high; low++, high--) {
        PyObject *swap = e->refs[low];
        e->refs[low] = e->refs[high];
        e->refs[high] = swap;
    }
    return push_frame(e, WALK_REFS, NULL, start, owner, unbounded);
}

static int push_ref(Encoder *e, PyObject *item);

/* Turn a WALK_LIST frame into a WALK_REFS one holding the items it has left:
 * the copy open_list skipped, taken before any code that could change the
 * list runs (the list is as it was when its header was written). */
static int
copy_rest_of_list(Encoder *e, Frame *frame)
{
    PyObject *list = frame->source;
    Py_ssize_t start = e->refs_used;
    for (Py_ssize_t i = PyList_GET_SIZE(list); i-- > frame->index;) {
        PyObject *item = PyList_GET_ITEM(list, i);
        Py_INCREF(item);
        if (push_ref(e, item) < 0)
            return RAISE;
    }
    frame->kind = WALK_REFS;
    frame->source = NULL;
    frame->index = start;
    Py_DECREF(list);
    return DONE;
}

/* The next item of the innermost open container (a new reference), or NULL
 * when it is finished (with an exception set if its iterator failed). */
static PyObject *
next_item(Encoder *e, Frame *frame)
{
    switch (frame->kind) {
    case WALK_LIST:
        /* write_list_in_place wrote it all, or made it WALK_REFS. */
        return NULL;
    case WALK_TUPLE:
        if (frame->index < PyTuple_GET_SIZE(frame->source)) {
            PyObject *item = PyTuple_GET_ITEM(frame->source, frame->index++);
            Py_INCREF(item);
            return item;
        }
        return NULL;
    case WALK_REFS:
        if (e->refs_used > frame->index)
            return e->refs[--e->refs_used];
        return NULL;
    case WALK_ITER:
        return PyIter_Next(frame->source);   /* NULL with an exception if it failed */
    }
    return NULL;
}

static int
close_frame(Encoder *e)
{
    Frame *frame = &e->frames[--e->depth];
    Py_XDECREF(frame->source);
    Py_DECREF(frame->owner);
    if (e->synced > e->depth)
        e->synced = e->depth;
    if (!frame->trailer)
        return DONE;
    if (reserve(e, 1) < 0)
        return RAISE;
    put_u8(e, NIL_EXT);
    return DONE;
}

/* ---- Scalars ---- */

/* Before 3.12 a str made by the legacy C API needs converting before its
 * characters can be read; 0 on success. */
static inline int
make_ready(PyObject *text)
{
#if PY_VERSION_HEX < 0x030C0000
    return PyUnicode_READY(text);
#else
    (void)text;
    return 0;
#endif
}

/* The UTF-8 form of ``text``: its own characters when ASCII, else a new
 * bytes object left in *owner; RAISE (UnicodeEncodeError for a lone surrogate). */
static int
utf8_of(PyObject *text, const char **data, Py_ssize_t *size, PyObject **owner)
{
    *owner = NULL;
    if (PyUnicode_IS_ASCII(text)) {
        *data = (const char *)PyUnicode_1BYTE_DATA(text);
        *size = PyUnicode_GET_LENGTH(text);
        return DONE;
    }
    *owner = PyUnicode_AsUTF8String(text);
    if (*owner == NULL)
        return RAISE;
    *data = PyBytes_AS_STRING(*owner);
    *size = PyBytes_GET_SIZE(*owner);
    return DONE;
}

/* The reference's error for the atom named ``name``: it shows ``atom`` (the
 * Atom written) or, when NULL, a new Atom (as it makes one of None). */
static int
refuse_atom(Encoder *e, PyObject *message, PyObject *name, PyObject *atom)
{
    if (atom != NULL || message == NULL)
        return refuse(e, message, atom);
    atom = PyObject_CallOneArg((PyObject *)AtomType, name);
    if (atom == NULL) {
        Py_XDECREF(message);
        return RAISE;
    }
    int rc = refuse(e, message, atom);
    Py_DECREF(atom);
    return rc;
}

/* An atom named by the exact str or Atom ``name``, as _Encoder.atom writes
 * it; ``atom`` is the Atom to name in an error (see refuse_atom). */
static int
write_atom(Encoder *e, PyObject *name, PyObject *atom)
{
    if (make_ready(name) < 0)
        return RAISE;
    Py_ssize_t chars = PyUnicode_GET_LENGTH(name);
    if (chars > MAX_ATOM_CHARS)
        return refuse_atom(e, PyUnicode_FromFormat(
            "atom of %zd characters is over Erlang's 255 limit", chars), name, atom);
    if (e->minor_version == 1 && PyUnicode_KIND(name) == PyUnicode_1BYTE_KIND) {
        /* Every character fits in latin-1 (strs use their narrowest kind). */
        if (reserve(e, 3 + chars) < 0)
            return RAISE;
        put_u8(e, ATOM_EXT);
        put_u16(e, (unsigned)chars);
        put_bytes(e, PyUnicode_1BYTE_DATA(name), chars);
        return DONE;
    }
    const char *data;
    Py_ssize_t size;
    PyObject *owner;
    int rc = utf8_of(name, &data, &size, &owner);
    if (rc != DONE) {
        PyObject *message = not_utf8("atom");
        return message == NULL ? RAISE : refuse_atom(e, message, name, atom);
    }
    if (reserve(e, 3 + size) < 0)
        rc = RAISE;
    if (rc == DONE) {
        if (size <= 255) {
            put_u8(e, SMALL_ATOM_UTF8_EXT);
            put_u8(e, (unsigned)size);
        }
        else {
            put_u8(e, ATOM_UTF8_EXT);
            put_u16(e, (unsigned)size);
        }
        put_bytes(e, data, size);
    }
    Py_XDECREF(owner);
    return rc;
}

/* An integer that fits in 64 bits; SMALL_BIG_EXT beyond 32. */
static int
write_small_int(Encoder *e, long long value)
{
    if (reserve(e, 11) < 0)
        return RAISE;
    if (0 <= value && value <= 255) {
        put_u8(e, SMALL_INTEGER_EXT);
        put_u8(e, (unsigned)value);
    }
    else if (INT32_MIN <= value && value <= INT32_MAX) {
        put_u8(e, INTEGER_EXT);
        put_u32(e, (uint32_t)value);
    }
    else {
        unsigned long long magnitude = value < 0 ? 0ULL - (unsigned long long)value
                                                 : (unsigned long long)value;
        unsigned char digits[8];
        unsigned size = 0;
        for (; magnitude; magnitude >>= 8)
            digits[size++] = (unsigned char)magnitude;
        put_u8(e, SMALL_BIG_EXT);
        put_u8(e, size);
        put_u8(e, value < 0);
        put_bytes(e, digits, size);
    }
    return DONE;
}

static int
write_int(Encoder *e, PyObject *obj)
{
    int overflow;
    long long value = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (!overflow)
        return write_small_int(e, value);
    /* Beyond 64 bits: rare, and Python's int.to_bytes does it well. */
    PyObject *encoded = PyObject_CallOneArg(py_big, obj);
    if (encoded == NULL)
        return RAISE;
    int rc = reserve(e, PyBytes_GET_SIZE(encoded));
    if (rc == DONE)
        put_bytes(e, PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded));
    Py_DECREF(encoded);
    return rc;
}

static int
write_float(Encoder *e, PyObject *obj)
{
    double value = PyFloat_AS_DOUBLE(obj);
    if (!isfinite(value))
        return refuse(e, PyUnicode_FromFormat("float %S is not finite (Erlang refuses NaN "
                                              "and infinities)", obj), obj);
    if (reserve(e, 9) < 0)
        return RAISE;
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    put_u8(e, NEW_FLOAT_EXT);
    put_u32(e, (uint32_t)(bits >> 32));
    put_u32(e, (uint32_t)bits);
    return DONE;
}

static int
write_binary(Encoder *e, const char *data, Py_ssize_t size)
{
    int rc = write_header(e, BINARY_EXT, size);
    if (rc != DONE)
        return rc;
    if (reserve(e, size) < 0)
        return RAISE;
    put_bytes(e, data, size);
    return DONE;
}

/* A str as a UTF-8 binary (str_as="binary"). */
static int
write_str(Encoder *e, PyObject *text)
{
    if (make_ready(text) < 0)
        return RAISE;
    const char *data;
    Py_ssize_t size;
    PyObject *owner;
    if (utf8_of(text, &data, &size, &owner) != DONE) {
        PyObject *message = not_utf8("str");
        return message == NULL ? RAISE : refuse(e, message, text);
    }
    int rc = write_binary(e, data, size);
    Py_XDECREF(owner);
    return rc;
}

/* A str as the list of its code points (str_as="charlist"), as Python
 * writes [ord(c) for c in text]: STRING_EXT when every one fits a byte. */
static int
write_charlist(Encoder *e, PyObject *text)
{
    if (make_ready(text) < 0)
        return RAISE;
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    if (length == 0) {
        if (reserve(e, 1) < 0)
            return RAISE;
        put_u8(e, NIL_EXT);
        return DONE;
    }
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    if (length <= MAX_STRING_EXT && kind == PyUnicode_1BYTE_KIND) {
        if (reserve(e, 3 + length) < 0)
            return RAISE;
        put_u8(e, STRING_EXT);
        put_u16(e, (unsigned)length);
        put_bytes(e, data, length);
        return DONE;
    }
    int rc = write_header(e, LIST_EXT, length);
    if (rc != DONE)
        return rc;
    if (length > PY_SSIZE_T_MAX / 8) {
        PyErr_NoMemory();
        return RAISE;
    }
    if (reserve(e, 5 * length + 1) < 0)
        return RAISE;
    for (Py_ssize_t i = 0; i < length; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c <= 255) {
            put_u8(e, SMALL_INTEGER_EXT);
            put_u8(e, c);
        }
        else {
            put_u8(e, INTEGER_EXT);
            put_u32(e, c);
        }
    }
    put_u8(e, NIL_EXT);
    return DONE;
}

/* ---- Containers ---- */

/* Whether every item of ``list`` (of at least ``least`` items) has exactly ``type``. */
static int
all_of_type(PyObject *list, PyTypeObject *type, Py_ssize_t least)
{
    Py_ssize_t length = PyList_GET_SIZE(list);
    if (length < least)
        return 0;
    for (Py_ssize_t i = 0; i < length; i++)
        if (Py_TYPE(PyList_GET_ITEM(list, i)) != type)
            return 0;
    return 1;
}

/* As Python's bulk_list once an item is not an exact int: bytes(list)
 * (running __index__), written as STRING_EXT if that worked and every item
 * is now an exact int. 1 if written, 0 if not, or RAISE. */
static int
write_bytes_of(Encoder *e, PyObject *list)
{
    PyObject *data = PyObject_CallOneArg((PyObject *)&PyBytes_Type, list);
    if (data == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError)
                && !PyErr_ExceptionMatches(PyExc_ValueError))
            return RAISE;
        PyErr_Clear();
        return 0;
    }
    Py_ssize_t length = PyBytes_GET_SIZE(data);
    int rc = 0;
    if (length <= MAX_STRING_EXT && all_of_type(list, &PyLong_Type, 1)) {
        rc = reserve(e, 3 + length) < 0 ? RAISE : 1;
        if (rc == 1) {
            put_u8(e, STRING_EXT);
            put_u16(e, (unsigned)length);
            put_bytes(e, PyBytes_AS_STRING(data), length);
        }
    }
    Py_DECREF(data);
    return rc;
}

/* Write ``list`` (of 1..65535 items, the first an exact int) as STRING_EXT
 * if Python's bulk_list does: when bytes(list) works and every item is an
 * exact int. 1 if written, 0 if not (nothing written), or RAISE. */
static int
write_byte_string(Encoder *e, PyObject *list)
{
    Py_ssize_t length = PyList_GET_SIZE(list);
    if (reserve(e, 3 + length) < 0)
        return RAISE;
    unsigned char *bytes = cursor(e) + 3;
    for (Py_ssize_t i = 0; i < length; i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        if (!PyLong_CheckExact(item)) {
            PyNumberMethods *number = Py_TYPE(item)->tp_as_number;
            if (number == NULL || number->nb_index == NULL)
                return 0;   /* bytes() would stop here with TypeError */
            return write_bytes_of(e, list);
        }
        int overflow;
        long value = PyLong_AsLongAndOverflow(item, &overflow);
        if (overflow || value < 0 || value > 255)
            return 0;
        bytes[i] = (unsigned char)value;
    }
    put_u8(e, STRING_EXT);
    put_u16(e, (unsigned)length);
    e->used += length;
    return 1;
}

/* Whether Python's bulk_list writes ``list`` whole through numpy (opening
 * no container, so not counted against MAX_DEPTH): at least _BULK_MIN items,
 * all exact floats, or all exact ints of 32 bits, as its first item was. */
static int
written_in_bulk(PyObject *list, PyTypeObject *first_type)
{
    if (first_type == &PyFloat_Type)
        return all_of_type(list, &PyFloat_Type, BULK_MIN);
    if (first_type != &PyLong_Type || !all_of_type(list, &PyLong_Type, BULK_MIN))
        return 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        int overflow;
        long long value = PyLong_AsLongLongAndOverflow(PyList_GET_ITEM(list, i), &overflow);
        if (overflow || value < INT32_MIN || value > INT32_MAX)
            return 0;
    }
    return 1;
}

/* A list as the reference writes it: as it is once bulk_list's bytes()
 * ran. Its items are written from the list itself while that runs no Python
 * code (a long flat list is never copied); at the first other item, the rest
 * is copied, so later code cannot tear the frame (write_list_in_place). */
static int
open_list(Encoder *e, PyObject *list)
{
    Py_ssize_t length = PyList_GET_SIZE(list);
    if (length == 0) {
        if (reserve(e, 1) < 0)
            return RAISE;
        put_u8(e, NIL_EXT);
        return DONE;
    }
    PyTypeObject *first_type = Py_TYPE(PyList_GET_ITEM(list, 0));
    if (length <= MAX_STRING_EXT && first_type == &PyLong_Type) {
        int written = write_byte_string(e, list);
        if (written != 0)
            return written > 0 ? DONE : written;
        length = PyList_GET_SIZE(list);   /* __index__ calls may have changed it */
    }
    int rc = write_header(e, LIST_EXT, length);
    if (rc != DONE)
        return rc;
    int unbounded = e->depth >= MAX_DEPTH && written_in_bulk(list, first_type);
    Py_INCREF(list);
    rc = push_frame(e, WALK_LIST, list, 0, list, unbounded);
    if (rc == DONE)
        e->frames[e->depth - 1].trailer = 1;
    return rc;
}

static int
open_tuple(Encoder *e, PyObject *tuple)
{
    Py_ssize_t arity = PyTuple_GET_SIZE(tuple);
    if (arity <= 255) {
        if (reserve(e, 2) < 0)
            return RAISE;
        put_u8(e, SMALL_TUPLE_EXT);
        put_u8(e, (unsigned)arity);
    }
    else {
        int rc = write_header(e, LARGE_TUPLE_EXT, arity);
        if (rc != DONE)
            return rc;
    }
    /* Even empty: the reference counts it against MAX_DEPTH. */
    Py_INCREF(tuple);
    return push_frame(e, WALK_TUPLE, tuple, 0, tuple, 0);
}

/* The _Encoder with this run's options (and no `default`: the terms handed
 * to it never reach it), shared by runs with the same options. */
static PyObject *
get_helper(Encoder *e)
{
    if (e->helper != NULL)
        return e->helper;
    PyObject *settings = Py_BuildValue("(iOOO)", e->minor_version,
                                       e->deterministic ? Py_True : Py_False,
                                       e->charlists ? Py_True : Py_False, e->none_as);
    if (settings == NULL)
        return NULL;
    PyObject *helper = PyDict_GetItemWithError(helpers, settings);
    if (helper != NULL) {
        Py_INCREF(helper);
    }
    else if (!PyErr_Occurred()) {
        helper = PyObject_CallFunction(py_encoder_class, "iOOOO", e->minor_version,
                                       e->deterministic ? Py_True : Py_False,
                                       e->charlists ? Py_True : Py_False, e->none_as, Py_None);
        if (helper != NULL && PyDict_GET_SIZE(helpers) < HELPER_CACHE_LIMIT
                && PyDict_SetItem(helpers, settings, helper) < 0)
            Py_CLEAR(helper);
    }
    Py_DECREF(settings);
    e->helper = helper;
    return helper;
}

/* A map whose pairs Python's map_pairs gives (sorted, or checked for keys
 * that collide as Erlang terms): its MAP_EXT header, then its pairs open. */
static int
open_map_pairs_in_python(Encoder *e, PyObject *map)
{
    PyObject *helper = get_helper(e);
    if (helper == NULL)
        return RAISE;
    PyObject *owner;
    PyObject *stack = current_stack(e, &owner);
    if (stack == NULL)
        return RAISE;
    /* A list of (key, value) tuples; its EncodeError is the reference's. */
    PyObject *pairs = PyObject_CallMethodObjArgs(helper, str_map_pairs, map, stack, owner,
                                                 NULL);
    Py_DECREF(stack);
    if (pairs == NULL)
        return RAISE;
    int rc = write_header(e, MAP_EXT, PyList_GET_SIZE(pairs));
    Py_ssize_t start = e->refs_used;
    for (Py_ssize_t i = 0; rc == DONE && i < PyList_GET_SIZE(pairs); i++) {
        /* Each pair's items, as the reference's chain.from_iterable(pairs). */
        PyObject *pair = PySequence_Fast(PyList_GET_ITEM(pairs, i), "map pair");
        if (pair == NULL) {
            rc = RAISE;
            break;
        }
        for (Py_ssize_t j = 0; rc == DONE && j < PySequence_Fast_GET_SIZE(pair); j++) {
            PyObject *item = PySequence_Fast_GET_ITEM(pair, j);
            Py_INCREF(item);
            rc = push_ref(e, item);
        }
        Py_DECREF(pair);
    }
    Py_DECREF(pairs);
    return rc == DONE ? open_refs(e, start, map, 0) : rc;
}

/* Whether distinct Python keys of this type are always distinct Erlang terms
 * (as codec.encoder._FLAT_KEY_TYPES). */
static int
flat_key_type(PyTypeObject *type)
{
    return type == &PyLong_Type || type == &PyFloat_Type || type == &PyBytes_Type
        || type == &PyUnicode_Type || type == AtomType;
}

static int
open_dict(Encoder *e, PyObject *dict)
{
    Py_ssize_t size = PyDict_GET_SIZE(dict);
    Py_ssize_t position = 0;
    PyObject *key, *value;
    if (size > 1) {
        if (e->deterministic)
            return open_map_pairs_in_python(e, dict);
        PyTypeObject *first_type = NULL;
        while (PyDict_Next(dict, &position, &key, NULL)) {
            if (first_type == NULL && flat_key_type(Py_TYPE(key)))
                first_type = Py_TYPE(key);
            else if (Py_TYPE(key) != first_type)
                return open_map_pairs_in_python(e, dict);
        }
        position = 0;
    }
    int rc = write_header(e, MAP_EXT, size);
    if (rc != DONE)
        return rc;
    Py_ssize_t start = e->refs_used;
    while (PyDict_Next(dict, &position, &key, &value)) {
        Py_INCREF(key);
        Py_INCREF(value);
        if (push_ref(e, key) < 0 || push_ref(e, value) < 0)
            return RAISE;
    }
    return open_refs(e, start, dict, 0);
}

/* Open the (key, value) tuples of a Map's _entries; 0 (opening nothing) if
 * one is not such a tuple, as no Map built by codec.terms has. */
static int
open_entries(Encoder *e, PyObject *map, PyObject *entries)
{
    Py_ssize_t start = e->refs_used, position = 0;
    PyObject *pair;
    while (PyDict_Next(entries, &position, NULL, &pair)) {
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) {
            while (e->refs_used > start)
                Py_DECREF(e->refs[--e->refs_used]);
            return 0;
        }
        PyObject *key = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
        Py_INCREF(key);
        Py_INCREF(value);
        if (push_ref(e, key) < 0 || push_ref(e, value) < 0)
            return RAISE;
    }
    return open_refs(e, start, map, 0) < 0 ? RAISE : 1;
}

/* A Map: its items are the (key, value) tuples of its _entries dict. */
static int
open_map(Encoder *e, PyObject *map)
{
    PyObject *entries = PyObject_GetAttr(map, str_entries);
    if (entries == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return RAISE;
        PyErr_Clear();
        return open_map_pairs_in_python(e, map);
    }
    int plain = PyDict_CheckExact(entries);
    Py_ssize_t size = plain ? PyDict_GET_SIZE(entries) : 0;
    int rc = DONE;
    if (plain && !(e->deterministic && size > 1)) {
        Py_ssize_t header = e->used;
        rc = write_header(e, MAP_EXT, size);
        int opened = rc == DONE ? open_entries(e, map, entries) : 1;
        if (opened == 0) {
            e->used = header;
            rc = open_map_pairs_in_python(e, map);
        }
        else if (opened < 0)
            rc = RAISE;
    }
    else {
        rc = open_map_pairs_in_python(e, map);
    }
    Py_DECREF(entries);
    return rc;
}

/* ---- Everything else, through Python ---- */

/* A term _Encoder.other knows: copy what it writes, then walk what it opens. */
static int
encode_in_python(Encoder *e, PyObject *obj)
{
    PyObject *helper = get_helper(e);
    if (helper == NULL)
        return RAISE;
    PyObject *owner;
    PyObject *pieces = PyList_New(0);
    PyObject *stack = current_stack(e, &owner);
    PyObject *write = pieces ? PyObject_GetAttr(pieces, str_append) : NULL;
    PyObject *opened = NULL;
    int rc = RAISE;
    if (write != NULL && stack != NULL) {
        /* Its EncodeError is the reference's, with the path. */
        opened = PyObject_CallMethodObjArgs(helper, str_other, obj, write, stack, owner, NULL);
        rc = opened == NULL ? RAISE : write_pieces(e, pieces);
    }
    if (rc == DONE && opened != Py_None) {
        /* (items, trailer, owner): other() opens with no trailer. */
        PyObject *items = PyTuple_GET_ITEM(opened, 0);
        Py_INCREF(items);
        rc = push_frame(e, WALK_ITER, items, 0, PyTuple_GET_ITEM(opened, 2), 0);
    }
    Py_XDECREF(opened);
    Py_XDECREF(write);
    Py_XDECREF(stack);
    Py_XDECREF(pieces);
    return rc;
}

/* Python turns a RecursionError in its loop (from sorting keys, from
 * `default`, from any code it runs) into this EncodeError, raised "from None". */
static void
explain_recursion_error(void)
{
    if (!PyErr_ExceptionMatches(PyExc_RecursionError))
        return;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    PyObject *error = PyObject_CallFunction(EncodeError, "ss",
                                            "map keys nested too deeply to sort", "$");
    if (error == NULL) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(traceback);
        return;
    }
    if (traceback != NULL)
        PyException_SetTraceback(value, traceback);
    Py_XDECREF(traceback);
    Py_DECREF(type);
    PyException_SetContext(error, value);
    PyException_SetCause(error, NULL);   /* and __suppress_context__ = True */
    Py_INCREF(EncodeError);
    PyErr_Restore(EncodeError, error, NULL);
}

/* A term of no known kind: write what `default` makes of it. */
static int
encode_with_default(Encoder *e, PyObject *obj)
{
    PyObject *stand_in = PyObject_CallOneArg(e->default_, obj);
    if (stand_in == NULL)
        return RAISE;
    Py_ssize_t start = e->refs_used;
    if (push_ref(e, stand_in) < 0)
        return RAISE;
    return open_refs(e, start, obj, 0);
}

static int
encode_other(Encoder *e, PyObject *obj)
{
    int known = PyObject_IsInstance(obj, known_types);
    if (known == 0) {
        /* Stock ErlPort's OpaqueObject subclasses nothing known. */
        PyObject *kind = PyObject_CallOneArg(py_stock_kind, obj);
        known = kind == NULL ? -1 : kind != Py_None;
        Py_XDECREF(kind);
    }
    if (known < 0)
        return RAISE;
    if (known)
        return encode_in_python(e, obj);
    if (e->default_ != NULL)
        return encode_with_default(e, obj);
    PyObject *name = PyObject_GetAttr((PyObject *)Py_TYPE(obj), str_name);
    if (name == NULL)
        return RAISE;
    int rc = refuse(e, PyUnicode_FromFormat("cannot encode %S", name), obj);
    Py_DECREF(name);
    return rc;
}

/* ---- The loop ---- */

/* Write ``obj`` if it is a scalar, or its header if it is a container (which
 * is then open, on top of the stack). */
static int
encode_item(Encoder *e, PyObject *obj)
{
    PyTypeObject *type = Py_TYPE(obj);
    if (type == &PyLong_Type)
        return write_int(e, obj);
    if (type == &PyFloat_Type)
        return write_float(e, obj);
    if (type == AtomType)
        return write_atom(e, obj, obj);
    if (type == &PyBytes_Type)
        return write_binary(e, PyBytes_AS_STRING(obj), PyBytes_GET_SIZE(obj));
    if (type == &PyUnicode_Type)
        return e->charlists ? write_charlist(e, obj) : write_str(e, obj);
    if (type == &PyList_Type)
        return open_list(e, obj);
    if (type == &PyTuple_Type)
        return open_tuple(e, obj);
    if (type == &PyDict_Type)
        return open_dict(e, obj);
    if (type == MapType)
        return open_map(e, obj);
    if (obj == Py_True || obj == Py_False)
        return write_atom(e, obj == Py_True ? str_true : str_false, NULL);
    if (obj == Py_None)
        return write_atom(e, e->none_as, NULL);
    return encode_other(e, obj);
}

/* Write the items of the innermost open list (a WALK_LIST frame) from the
 * list itself while writing each runs no Python code (an exact scalar that
 * encode_item writes in C; not an integer beyond 64 bits, which goes to
 * codec.encoder._big), so nothing can change the list meanwhile. At the
 * first other item, copy what is left (copy_rest_of_list) and stop. */
static int
write_list_in_place(Encoder *e, Frame *frame)
{
    PyObject *list = frame->source;
    while (frame->index < PyList_GET_SIZE(list)) {
        PyObject *item = PyList_GET_ITEM(list, frame->index);
        PyTypeObject *type = Py_TYPE(item);
        int rc;
        if (type == &PyFloat_Type)
            rc = write_float(e, item);
        else if (type == &PyLong_Type) {
            int overflow;
            long long value = PyLong_AsLongLongAndOverflow(item, &overflow);
            if (overflow)
                return copy_rest_of_list(e, frame);
            rc = write_small_int(e, value);
        }
        else if (type == &PyBytes_Type || type == &PyUnicode_Type || type == AtomType
                 || item == Py_True || item == Py_False || item == Py_None)
            rc = encode_item(e, item);
        else
            return copy_rest_of_list(e, frame);
        if (rc != DONE)
            return rc;
        frame->index++;
    }
    return DONE;
}

static int
encode_term(Encoder *e, PyObject *term)
{
    if (reserve(e, 1) < 0)
        return RAISE;
    put_u8(e, VERSION);
    int rc = encode_item(e, term);
    while (rc == DONE && e->depth > 0) {
        Frame *top = &e->frames[e->depth - 1];
        if (top->kind == WALK_LIST && (rc = write_list_in_place(e, top)) != DONE)
            break;
        PyObject *item = next_item(e, top);
        if (item == NULL) {
            rc = PyErr_Occurred() ? RAISE : close_frame(e);
            continue;
        }
        rc = encode_item(e, item);
        Py_DECREF(item);
    }
    return rc;
}

static void
release(Encoder *e)
{
    while (e->depth > 0) {
        Frame *frame = &e->frames[--e->depth];
        Py_XDECREF(frame->source);
        Py_DECREF(frame->owner);
    }
    while (e->refs_used > 0)
        Py_DECREF(e->refs[--e->refs_used]);
    if (e->frames != e->inline_frames)
        PyMem_Free(e->frames);
    if (e->refs != e->inline_refs)
        PyMem_Free(e->refs);
    Py_XDECREF(e->python_stack);
    Py_XDECREF(e->helper);
    Py_XDECREF(e->out);
}

/* ---- encode() ---- */

typedef struct {
    int minor_version, level, deterministic, charlists;
    PyObject *none_as, *default_;
} Options;

/* Which of ``names`` ``name`` is (interned names match by identity), or -1. */
static int
keyword_index(PyObject *const *names, PyObject *name)
{
    for (int k = 0; k < KW_COUNT; k++)
        if (names[k] != NULL && name == names[k])
            return k;
    for (int k = 0; k < KW_COUNT; k++)
        if (names[k] != NULL && PyUnicode_Compare(name, names[k]) == 0)
            return k;
    return -1;
}

/* Read the options of an ordinary call of encode (``names``: keyword_names)
 * or codec.plain.encode (plain_keyword_names): one positional term, known
 * keywords, exact bools, ints and strs. 0 if the call is anything else (then
 * Python takes it whole, raising its own TypeError or ValueError if it is
 * wrong). */
static int
read_options(Py_ssize_t nargs, PyObject *const *args, PyObject *kwnames,
             PyObject *const *names, Options *options)
{
    PyObject *given[KW_COUNT] = {NULL};
    if (nargs != 1)
        return 0;
    Py_ssize_t count = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < count; i++) {
        int k = keyword_index(names, PyTuple_GET_ITEM(kwnames, i));
        if (k < 0 || given[k] != NULL)
            return 0;
        given[k] = args[nargs + i];
    }
    PyObject *value;
    int overflow = 0;
    long number = 2;
    if ((value = given[KW_MINOR_VERSION]) != NULL && !PyLong_CheckExact(value))
        return 0;
    if (value != NULL)
        number = PyLong_AsLongAndOverflow(value, &overflow);
    if (overflow || (number != 1 && number != 2))
        return 0;
    options->minor_version = (int)number;
    if ((value = given[KW_COMPRESSED]) == NULL || value == Py_False)
        number = 0;
    else if (value == Py_True)
        number = 6;
    else if (PyLong_CheckExact(value))
        number = PyLong_AsLongAndOverflow(value, &overflow);
    else
        return 0;
    if (overflow || number < 0 || number > 9)
        return 0;
    options->level = (int)number;
    if ((value = given[KW_DETERMINISTIC]) == NULL || value == Py_False)
        options->deterministic = 0;
    else if (value == Py_True)
        options->deterministic = 1;
    else
        return 0;
    if ((value = given[KW_STR_AS]) == NULL)
        options->charlists = 0;
    else if (!PyUnicode_CheckExact(value))
        return 0;
    else if (value == str_binary || PyUnicode_Compare(value, str_binary) == 0)
        options->charlists = 0;
    else if (value == str_charlist || PyUnicode_Compare(value, str_charlist) == 0)
        options->charlists = 1;
    else
        return 0;
    options->none_as = given[KW_NONE_AS] == NULL ? str_nil : given[KW_NONE_AS];
    if (!PyUnicode_CheckExact(options->none_as))
        return 0;
    value = given[KW_DEFAULT];
    options->default_ = value == Py_None ? NULL : value;
    return 1;
}

/* Set up a run with ``options``: empty output, no open containers. */
static int
start_encoder(Encoder *e, const Options *options)
{
    e->minor_version = options->minor_version;
    e->deterministic = options->deterministic;
    e->charlists = options->charlists;
    e->none_as = options->none_as;
    e->default_ = options->default_;
    e->helper = NULL;
    e->used = 0;
    e->capacity = 256;
    e->out = PyBytes_FromStringAndSize(NULL, e->capacity);
    e->frames = e->inline_frames;
    e->depth = 0;
    e->frames_capacity = INLINE_FRAMES;
    e->python_stack = NULL;
    e->synced = 0;
    e->refs = e->inline_refs;
    e->refs_used = 0;
    e->refs_capacity = INLINE_REFS;
    return e->out == NULL ? -1 : 0;
}

/* The frame of ``term`` with ``options``. */
static PyObject *
encode_with(PyObject *term, const Options *options)
{
    Encoder e;
    if (start_encoder(&e, options) < 0)
        return NULL;
    int rc = encode_term(&e, term);
    PyObject *data = NULL;
    if (rc == DONE && _PyBytes_Resize(&e.out, e.used) == 0) {
        data = e.out;
        e.out = NULL;
    }
    PyObject *type = NULL, *value = NULL, *traceback = NULL;
    if (rc != DONE) {
        explain_recursion_error();
        /* Kept aside while releasing may run finalizers. */
        PyErr_Fetch(&type, &value, &traceback);
    }
    release(&e);
    if (rc != DONE)
        PyErr_Restore(type, value, traceback);
    if (data == NULL || options->level == 0)
        return data;
    PyObject *packed = PyObject_CallFunction(py_compress, "Oi", data, options->level);
    Py_DECREF(data);
    return packed;
}

static PyObject *
encode(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    (void)module;
    Options options;
    if (!read_options(nargs, args, kwnames, keyword_names, &options))
        return PyObject_Vectorcall(py_encode, args, nargs, kwnames);
    return encode_with(args[0], &options);
}

/* codec.plain's functions this file calls, on the first plain call. */
static int
load_plain(void)
{
    if (py_plain_encode != NULL)
        return 0;
    PyObject *plain = PyImport_ImportModule("codec.plain");
    int status = plain != NULL
        && (py_plain_default = PyObject_GetAttrString(plain, "_default"))
        && (py_plain_refusal = PyObject_GetAttrString(plain, "_refusal"))
        && (PlainRefused = PyObject_GetAttrString(plain, "_Refused"))
        && (py_plain_encode = PyObject_GetAttrString(plain, "reference_encode")) ? 0 : -1;
    Py_XDECREF(plain);
    return status;
}

/* As codec.plain.reference_encode: a value plain._default refused is the
 * EncodeError plain._refusal makes of it, raised "from None". */
static PyObject *
plain_encode(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    (void)module;
    Options options;
    if (load_plain() < 0)
        return NULL;
    if (!read_options(nargs, args, kwnames, plain_keyword_names, &options)
            || (options.none_as != str_nil
                && PyUnicode_Compare(options.none_as, str_nil) != 0
                && PyUnicode_Compare(options.none_as, str_undefined) != 0))
        return PyObject_Vectorcall(py_plain_encode, args, nargs, kwnames);
    options.default_ = py_plain_default;
    PyObject *data = encode_with(args[0], &options);
    if (data != NULL || !PyErr_ExceptionMatches(PlainRefused))
        return data;
    PyObject *type, *refused, *traceback;
    PyErr_Fetch(&type, &refused, &traceback);
    PyErr_NormalizeException(&type, &refused, &traceback);
    if (traceback != NULL)
        PyException_SetTraceback(refused, traceback);
    PyObject *error = PyObject_CallFunctionObjArgs(py_plain_refusal, args[0], refused, NULL);
    if (error != NULL) {
        PyException_SetContext(error, refused);   /* steals refused */
        refused = NULL;
        PyException_SetCause(error, NULL);   /* and __suppress_context__ = True */
        PyErr_SetObject((PyObject *)Py_TYPE(error), error);
        Py_DECREF(error);
    }
    Py_XDECREF(type);
    Py_XDECREF(refused);
    Py_XDECREF(traceback);
    return NULL;
}

/* ---- Module ---- */

PyDoc_STRVAR(encode_doc,
"encode($module, term, *, minor_version=2, compressed=False, deterministic=False,\n"
"       str_as='binary', none_as='nil', default=None)\n"
"--\n"
"\n"
"Encode ``term`` as one ETF frame (starting with 131); codec.encoder.encode in C.");

PyDoc_STRVAR(plain_encode_doc,
"plain_encode($module, value, *, strings='binary', none='nil', minor_version=2,\n"
"             compressed=False, deterministic=False)\n"
"--\n"
"\n"
"Encode a plain Python value as one ETF frame; codec.plain.reference_encode in C.");

static PyMethodDef methods[] = {
    {"encode", (PyCFunction)(void (*)(void))encode, METH_FASTCALL | METH_KEYWORDS, encode_doc},
    {"plain_encode", (PyCFunction)(void (*)(void))plain_encode, METH_FASTCALL | METH_KEYWORDS,
     plain_encode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "codec._cencode",
    "The External Term Format encoder of codec.encoder, in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

static int
intern_all(void)
{
    static const char *const names[KW_COUNT] = {
        "minor_version", "compressed", "deterministic", "str_as", "none_as", "default"};
    static const char *const plain_names[KW_COUNT] = {
        "minor_version", "compressed", "deterministic", "strings", "none", NULL};
    for (int k = 0; k < KW_COUNT; k++)
        if ((keyword_names[k] = PyUnicode_InternFromString(names[k])) == NULL
                || (plain_names[k] != NULL
                    && (plain_keyword_names[k] = PyUnicode_InternFromString(plain_names[k]))
                       == NULL))
            return -1;
    return (str_binary = PyUnicode_InternFromString("binary")) != NULL
        && (str_charlist = PyUnicode_InternFromString("charlist")) != NULL
        && (str_nil = PyUnicode_InternFromString("nil")) != NULL
        && (str_undefined = PyUnicode_InternFromString("undefined")) != NULL
        && (str_true = PyUnicode_InternFromString("true")) != NULL
        && (str_false = PyUnicode_InternFromString("false")) != NULL
        && (str_other = PyUnicode_InternFromString("other")) != NULL
        && (str_map_pairs = PyUnicode_InternFromString("map_pairs")) != NULL
        && (str_entries = PyUnicode_InternFromString("_entries")) != NULL
        && (str_append = PyUnicode_InternFromString("append")) != NULL
        && (str_fail = PyUnicode_InternFromString("fail")) != NULL
        && (str_name = PyUnicode_InternFromString("__name__")) != NULL ? 0 : -1;
}

PyMODINIT_FUNC
PyInit__cencode(void)
{
    PyObject *encoder = PyImport_ImportModule("codec.encoder");
    PyObject *terms = PyImport_ImportModule("codec.terms");
    PyObject *errors = PyImport_ImportModule("codec.errors");
    PyObject *stock = PyImport_ImportModule("codec.stock");
    PyObject *module = NULL;
    if (encoder == NULL || terms == NULL || errors == NULL || stock == NULL
            || intern_all() < 0)
        goto done;
    py_stock_kind = PyObject_GetAttrString(stock, "stock_kind");
    py_encode = PyObject_GetAttrString(encoder, "encode");
    py_compress = PyObject_GetAttrString(encoder, "_compress");
    py_big = PyObject_GetAttrString(encoder, "_big");
    py_tag_u32 = PyObject_GetAttrString(encoder, "_tag_u32");
    py_refuse_depth = PyObject_GetAttrString(encoder, "_refuse_depth");
    py_encoder_class = PyObject_GetAttrString(encoder, "_Encoder");
    EncodeError = PyObject_GetAttrString(errors, "EncodeError");
    AtomType = (PyTypeObject *)PyObject_GetAttrString(terms, "Atom");
    MapType = (PyTypeObject *)PyObject_GetAttrString(terms, "Map");
    helpers = PyDict_New();
    if (!py_encode || !py_compress || !py_big || !py_tag_u32 || !py_refuse_depth
            || !py_encoder_class || !py_stock_kind
            || !EncodeError || !AtomType || !MapType || !helpers)
        goto done;
    /* The kinds _Encoder.other writes without calling `default` (bool and
     * None are exact types, handled before it is asked). */
    PyTypeObject *const builtin_types[] = {
        &PyLong_Type, &PyFloat_Type, &PyUnicode_Type, &PyBytes_Type, &PyByteArray_Type,
        &PyMemoryView_Type, &PyList_Type, &PyTuple_Type, &PyDict_Type};
    static const char *const term_types[] = {
        "Map", "ImproperList", "BitBinary", "Pid", "Port", "Reference", "Export", "Fun", "Opaque"};
    const Py_ssize_t builtin_count = sizeof builtin_types / sizeof builtin_types[0];
    const Py_ssize_t term_count = sizeof term_types / sizeof term_types[0];
    known_types = PyTuple_New(builtin_count + term_count);
    if (known_types == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < builtin_count; i++) {
        Py_INCREF(builtin_types[i]);
        PyTuple_SET_ITEM(known_types, i, (PyObject *)builtin_types[i]);
    }
    for (Py_ssize_t i = 0; i < term_count; i++) {
        PyObject *type = PyObject_GetAttrString(terms, term_types[i]);
        if (type == NULL)
            goto done;
        PyTuple_SET_ITEM(known_types, builtin_count + i, type);
    }
    module = PyModule_Create(&module_def);
done:
    Py_XDECREF(encoder);
    Py_XDECREF(terms);
    Py_XDECREF(errors);
    Py_XDECREF(stock);
    return module;
}
