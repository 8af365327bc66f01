/* codec._cdecode: the External Term Format decoder of codec.decoder, in C.
 *
 * `decode` and `decode_from` take the same arguments and give the same
 * results and exceptions as their pure-Python counterparts in
 * codec/decoder.py, which stay the reference. This file decodes the common
 * tags itself: integers, big integers, NEW_FLOAT_EXT, the four atom tags,
 * binaries, nil, strings, tuples, lists, maps and NEW_PID_EXT. It hands
 * back to Python:
 *   - every other tag (funs, ports, references, exports, bitstrings, legacy
 *     forms), one whole sub-term at a time, to codec.decoder._decode_term;
 *   - inflating a compressed frame, to codec.decoder._inflate;
 *   - finding the error in a malformed input: it stops, drops what it built
 *     and has the Python function read the same bytes again, without the
 *     hooks, which have already seen every value before the fault (see
 *     report_malformed). Duplicate map keys it reports itself. Errors inside
 *     a delegated sub-term and exceptions raised by hooks propagate unchanged;
 *   - calls it would not handle exactly alike, whole: unknown or
 *     positional-as-keyword arguments, a zero_copy that is not a bool, an
 *     offset that is not an int.
 *
 * Like the Python decoder it is one loop with an explicit stack of open
 * containers (on the heap once deeper than a few levels), so nesting depth
 * is limited by memory only. It checks every length against the bytes left
 * before allocating anything for it, counting the elements that open
 * containers are still owed (as the Python decoder does), since it allocates
 * each container whole.
 * Atoms are interned in a fixed-size table, so memory stays bounded.
 *
 * `plain_decode` and `plain_decode_from` are codec.plain's reference_decode
 * and reference_decode_from: the same loop in plain mode, which maps the
 * common terms itself instead of calling the reference's hooks (see the
 * plain_* functions) and hands the rare ones to codec.plain's Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

enum {
    VERSION = 131,
    COMPRESSED = 80,
    SMALL_INTEGER_EXT = 97,
    INTEGER_EXT = 98,
    NEW_FLOAT_EXT = 70,
    SMALL_BIG_EXT = 110,
    LARGE_BIG_EXT = 111,
    ATOM_EXT = 100,
    SMALL_ATOM_EXT = 115,
    ATOM_UTF8_EXT = 118,
    SMALL_ATOM_UTF8_EXT = 119,
    BINARY_EXT = 109,
    NIL_EXT = 106,
    STRING_EXT = 107,
    SMALL_TUPLE_EXT = 104,
    LARGE_TUPLE_EXT = 105,
    MAP_EXT = 116,
    LIST_EXT = 108,
    NEW_PID_EXT = 88,
};

/* ---- Python objects this module works with, looked up once at import ---- */

static PyObject *AtomType, *MapType, *ImproperListType, *PidType, *DecodeError;
static PyObject *py_decode, *py_decode_from;   /* the reference functions */
static PyObject *py_decode_term, *py_inflate, *py_byte_view, *py_exact_key;
static PyObject *py_duplicate_key, *py_unchecked_map;
static PyObject *default_max_inflated_size;
/* codec.plain's, imported on the first plain call (codec.plain imports this module). */
static PyObject *py_plain_decode, *py_plain_decode_from, *py_plain_map, *py_plain_tuple;
static PyObject *py_plain_hooks;
static PyObject *str_items, *str_tail, *str_offset, *str_reason;
/* Map has __slots__ ("_entries", "_hash"): where they live in an instance. */
static Py_ssize_t map_entries_offset, map_hash_offset;

/* ---- Keyword arguments ---- */

enum { OPT_ZERO_COPY, OPT_MAX_INFLATED_SIZE, OPT_ATOM_HOOK, OPT_BINARY_HOOK, OPT_MAP_HOOK,
       OPT_TUPLE_HOOK, OPT_PID_HOOK, OPT_COUNT };
static const char *const option_names[OPT_COUNT] = {
    "zero_copy", "max_inflated_size", "atom_hook", "binary_hook", "map_hook", "tuple_hook",
    "pid_hook",
};
static PyObject *option_strings[OPT_COUNT];

/* ---- Bounded atom cache ----
 * Direct-mapped: a new atom evicts whatever shared its slot, so the cache
 * never holds more than ATOM_CACHE_SIZE atoms (each at most 1020 bytes). */

#define ATOM_CACHE_SIZE 4096
typedef struct {
    PyObject *raw;   /* the atom's bytes as they appear on the wire */
    PyObject *atom;
    int latin1;
} AtomCacheEntry;
static AtomCacheEntry atom_cache[ATOM_CACHE_SIZE];

/* ---- Decoder state ---- */

enum { FRAME_TUPLE, FRAME_LIST, FRAME_MAP };

typedef struct {
    int kind;
    PyObject *container;   /* tuple, list, dict of Map entries, or list of pairs for map_hook */
    PyObject *pending_key; /* a map's key waiting for its value */
    Py_ssize_t filled;     /* elements (or map pairs) stored so far */
    Py_ssize_t size;       /* elements (lists: before the tail) or map pairs */
    Py_ssize_t start;      /* offset of the container's tag */
} Frame;

#define INLINE_FRAMES 16

typedef struct {
    const unsigned char *buf;
    Py_ssize_t end;
    PyObject *src;         /* what the Python decoder would index: bytes or a byte view */
    PyObject *view;        /* byte view for zero-copy slices; made on first need for bytes */
    int zero_copy;
    PyObject *options[OPT_COUNT];
    PyObject *atom_hook, *binary_hook, *map_hook, *tuple_hook, *pid_hook;  /* NULL for None */
    PyObject *hooks;       /* the Python decoder's hooks tuple, made on first delegation */
    int malformed;         /* set when the input is bad: the caller re-runs Python */
    int plain;             /* codec.plain's mapping, done here (see the plain_* functions) */
    PyObject *last_binary; /* plain: the value of the last binary read (strong), ... */
    Py_ssize_t last_at, last_size;   /* ... where its bytes are, ... */
    int last_was_key;      /* ... and whether it was a map key */
    Py_ssize_t owed;       /* elements open containers still expect, not yet begun */
    Frame *frames;
    Py_ssize_t depth, capacity;
    Frame inline_frames[INLINE_FRAMES];
} Decoder;

static void decoder_init(Decoder *d, const unsigned char *buf, Py_ssize_t end, PyObject *src,
                         PyObject *view, PyObject *const *options)
{
    d->buf = buf;
    d->end = end;
    d->src = src;
    d->view = view;
    Py_XINCREF(view);
    d->zero_copy = options[OPT_ZERO_COPY] == Py_True;
    memcpy(d->options, options, sizeof d->options);
#define HOOK(i) (options[i] == Py_None ? NULL : options[i])
    d->atom_hook = HOOK(OPT_ATOM_HOOK);
    d->binary_hook = HOOK(OPT_BINARY_HOOK);
    d->map_hook = HOOK(OPT_MAP_HOOK);
    d->tuple_hook = HOOK(OPT_TUPLE_HOOK);
    d->pid_hook = HOOK(OPT_PID_HOOK);
#undef HOOK
    d->hooks = NULL;
    d->malformed = 0;
    d->plain = 0;
    d->last_binary = NULL;
    d->frames = d->inline_frames;
    d->depth = 0;
    d->capacity = INLINE_FRAMES;
    d->owed = 0;
}

static void decoder_clear(Decoder *d)
{
    for (Py_ssize_t i = 0; i < d->depth; i++) {
        Py_XDECREF(d->frames[i].container);
        Py_XDECREF(d->frames[i].pending_key);
    }
    d->depth = 0;
    if (d->frames != d->inline_frames)
        PyMem_Free(d->frames);
    d->frames = d->inline_frames;
    Py_CLEAR(d->view);
    Py_CLEAR(d->hooks);
    Py_CLEAR(d->last_binary);
}

/* Whether a container whose header ends at `pos` can hold `slots` elements.
 * Every element still owed takes at least one byte, so a valid input has a
 * byte left for each; refusing anything more keeps what is allocated ahead
 * within the input's size, however many huge headers are nested. (Python
 * grows its lists as elements arrive; it fails such inputs later.) */
static int room_for(Decoder *d, uint64_t slots, Py_ssize_t pos)
{
    Py_ssize_t left = d->end - pos - d->owed;   /* negative once the input is short */
    return left >= 0 && slots <= (uint64_t)left;
}

/* Mark the input as malformed; always returns NULL for `return malformed(d);`. */
static PyObject *malformed(Decoder *d)
{
    d->malformed = 1;
    return NULL;
}

static uint16_t read_u16(const unsigned char *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint32_t read_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static double read_f64(const unsigned char *p)
{
    uint64_t bits = (uint64_t)read_u32(p) << 32 | read_u32(p + 4);
    double value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* Call `hook(value)`, consuming `value`. */
static PyObject *apply_hook(PyObject *hook, PyObject *value)
{
    PyObject *result = PyObject_CallOneArg(hook, value);
    Py_DECREF(value);
    return result;
}

/* ---- Atoms ---- */

static size_t atom_slot(const unsigned char *raw, Py_ssize_t size, int latin1)
{
    uint32_t hash = 2166136261u ^ (uint32_t)latin1;   /* FNV-1a */
    for (Py_ssize_t i = 0; i < size; i++)
        hash = (hash ^ raw[i]) * 16777619u;
    return hash % ATOM_CACHE_SIZE;
}

static PyObject *make_atom(Decoder *d, const unsigned char *raw, Py_ssize_t size, int latin1)
{
    PyObject *text = latin1 ? PyUnicode_DecodeLatin1((const char *)raw, size, NULL)
                            : PyUnicode_DecodeUTF8((const char *)raw, size, NULL);
    if (text == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
            return NULL;
        PyErr_Clear();
        return malformed(d);
    }
    if (PyUnicode_GET_LENGTH(text) > 255) {
        Py_DECREF(text);
        return malformed(d);
    }
    PyObject *atom = apply_hook(AtomType, text);
    /* An Atom refers to nothing but its class, so it cannot close a reference
     * cycle; out of the collector's sight, it lets the tuples and dicts that
     * hold only atoms and numbers be left out too (see untracked), which
     * makes the collections that decoding many maps triggers cheap. */
    if (atom != NULL)
        PyObject_GC_UnTrack(atom);
    return atom;
}

/* The Atom of any atom tag at *pos (no hook applied); advances *pos past it. */
static PyObject *read_atom(Decoder *d, Py_ssize_t *pos)
{
    const unsigned char *buf = d->buf;
    Py_ssize_t start = *pos, at;
    Py_ssize_t size;
    if (start >= d->end)
        return malformed(d);
    unsigned char tag = buf[start];
    if (tag == SMALL_ATOM_UTF8_EXT || tag == SMALL_ATOM_EXT) {
        if (start + 2 > d->end)
            return malformed(d);
        size = buf[start + 1];
        at = start + 2;
    }
    else if (tag == ATOM_EXT || tag == ATOM_UTF8_EXT) {
        if (start + 3 > d->end)
            return malformed(d);
        size = read_u16(buf + start + 1);
        at = start + 3;
    }
    else
        return malformed(d);
    if (size > d->end - at)
        return malformed(d);
    const unsigned char *raw = buf + at;
    int latin1 = tag == ATOM_EXT || tag == SMALL_ATOM_EXT;
    AtomCacheEntry *entry = &atom_cache[atom_slot(raw, size, latin1)];
    *pos = at + size;
    if (entry->atom != NULL && entry->latin1 == latin1 && PyBytes_GET_SIZE(entry->raw) == size
            && memcmp(PyBytes_AS_STRING(entry->raw), raw, size) == 0) {
        Py_INCREF(entry->atom);
        return entry->atom;
    }
    PyObject *atom = make_atom(d, raw, size, latin1);
    if (atom == NULL)
        return NULL;
    PyObject *key = PyBytes_FromStringAndSize((const char *)raw, size);
    if (key == NULL) {
        Py_DECREF(atom);
        return NULL;
    }
    Py_XSETREF(entry->raw, key);
    Py_INCREF(atom);
    Py_XSETREF(entry->atom, atom);
    entry->latin1 = latin1;
    return atom;
}

/* Whether the collector need not see a container holding `item`: CPython's
 * own rule for untracking tuples and dicts. */
static int untracked(PyObject *item)
{
    return !PyObject_GC_IsTracked(item);   /* 0 for objects of no collected type too */
}

/* Take a finished dict out of the collector's sight when nothing in it needs
 * to be seen: CPython keeps a dict tracked once a key is an instance of a
 * class (an Atom) even when that instance is untracked. */
static void untrack_dict(PyObject *dict)
{
    Py_ssize_t position = 0;
    PyObject *key, *value;
    while (PyDict_Next(dict, &position, &key, &value))
        if (!untracked(key) || !untracked(value))
            return;
    PyObject_GC_UnTrack(dict);
}

/* ---- Scalars ---- */

/* SMALL_BIG_EXT / LARGE_BIG_EXT at `start`: magnitude little-endian, then sign. */
static PyObject *read_big(Decoder *d, Py_ssize_t start, Py_ssize_t *pos)
{
    const unsigned char *buf = d->buf;
    uint64_t size;
    Py_ssize_t at;
    int negative;
    if (buf[start] == SMALL_BIG_EXT) {
        if (start + 3 > d->end)
            return malformed(d);
        size = buf[start + 1];
        negative = buf[start + 2] != 0;
        at = start + 3;
    }
    else {
        if (start + 6 > d->end)
            return malformed(d);
        size = read_u32(buf + start + 1);
        negative = buf[start + 5] != 0;
        at = start + 6;
    }
    if (size > (uint64_t)(d->end - at))
        return malformed(d);
    *pos = at + (Py_ssize_t)size;
    PyObject *magnitude;
    if (size <= 8) {
        unsigned long long word = 0;
        for (Py_ssize_t i = (Py_ssize_t)size; i-- > 0;)
            word = word << 8 | buf[at + i];
        magnitude = PyLong_FromUnsignedLongLong(word);
    }
    else {
#if PY_VERSION_HEX >= 0x030D0000
        magnitude = PyLong_FromUnsignedNativeBytes(
            buf + at, (size_t)size,
            Py_ASNATIVEBYTES_LITTLE_ENDIAN | Py_ASNATIVEBYTES_UNSIGNED_BUFFER);
#else
        magnitude = _PyLong_FromByteArray(buf + at, (size_t)size, 1, 0);
#endif
    }
    if (magnitude == NULL || !negative)
        return magnitude;
    PyObject *value = PyNumber_Negative(magnitude);
    Py_DECREF(magnitude);
    return value;
}

static PyObject *get_view(Decoder *d)
{
    if (d->view == NULL)
        d->view = PyMemoryView_FromObject(d->src);
    return d->view;
}

/* A binary's value: bytes, or under zero_copy a slice of the input view
 * (except as a map key, where a mutable-looking view would be a trap). */
static PyObject *make_binary(Decoder *d, Py_ssize_t at, Py_ssize_t size, int is_map_key)
{
    if (d->zero_copy && !is_map_key) {
        PyObject *view = get_view(d);
        return view == NULL ? NULL : PySequence_GetSlice(view, at, at + size);
    }
    return PyBytes_FromStringAndSize((const char *)d->buf + at, size);
}

static PyObject *read_string(Decoder *d, Py_ssize_t at, Py_ssize_t length)
{
    PyObject *list = PyList_New(length);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < length; i++)
        PyList_SET_ITEM(list, i, PyLong_FromLong(d->buf[at + i]));   /* cached small ints */
    return list;
}

/* ---- codec.plain's mapping ----
 * In a plain run these give what the hooks of codec/plain.py (the reference)
 * give, in the same order: the atoms true, false, nil and undefined become
 * True, False and None; a binary becomes a str when it is valid UTF-8; a
 * tuple may become an Opaque or a tensor array (plain._tuple_value decides,
 * in Python); a map becomes a dict, or, when a key is not of a plain type or
 * two keys are one dict key, what plain._map makes of its pairs. */

/* The plain value of an atom (consumed). */
static PyObject *plain_atom(PyObject *atom)
{
    const char *name;
    PyObject *value;
    switch (PyUnicode_GET_LENGTH(atom)) {
    case 3: name = "nil"; value = Py_None; break;
    case 4: name = "true"; value = Py_True; break;
    case 5: name = "false"; value = Py_False; break;
    case 9: name = "undefined"; value = Py_None; break;
    default: return atom;
    }
    if (PyUnicode_CompareWithASCIIString(atom, name) != 0)
        return atom;
    Py_DECREF(atom);
    Py_INCREF(value);
    return value;
}

/* Whether `size` bytes at `p` are UTF-8 as Python's strict decoder takes it:
 * no overlong forms, no surrogates, nothing past U+10FFFF. Checked before
 * decoding because a failed decode copies the whole input into its error. */
static int utf8_valid(const unsigned char *p, Py_ssize_t size)
{
    Py_ssize_t i = 0;
    while (i < size) {
        uint64_t word;
        if (i + 8 <= size && (memcpy(&word, p + i, 8), !(word & 0x8080808080808080ULL))) {
            i += 8;
            continue;
        }
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        Py_ssize_t width = c < 0xC2 ? 0 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF5 ? 4 : 0;
        if (width == 0 || width > size - i)
            return 0;
        for (Py_ssize_t k = 1; k < width; k++)
            if ((p[i + k] & 0xC0) != 0x80)
                return 0;
        unsigned next = p[i + 1];
        if ((c == 0xE0 && next < 0xA0) || (c == 0xED && next >= 0xA0)
                || (c == 0xF0 && next < 0x90) || (c == 0xF4 && next >= 0x90))
            return 0;   /* overlong, surrogate, overlong, past U+10FFFF */
        i += width;
    }
    return 1;
}

#define ASCII_BLOCK 4096
#define HIGH_BITS 0x8080808080808080ULL

/* The str of `size` (at least 2) ASCII bytes at `p`, copied block by block
 * as each is checked (one pass over the input); Py_None (a new reference) if
 * a byte is not ASCII. PyUnicode_DecodeUTF8 would read the input twice. */
static PyObject *ascii_str(const unsigned char *p, Py_ssize_t size)
{
    PyObject *text = PyUnicode_New(size, 127);
    if (text == NULL)
        return NULL;
    unsigned char *out = PyUnicode_1BYTE_DATA(text);
    for (Py_ssize_t done = 0; done < size; done += ASCII_BLOCK) {
        Py_ssize_t block = size - done < ASCII_BLOCK ? size - done : ASCII_BLOCK;
        uint64_t seen = 0, word;
        Py_ssize_t i = 0;
        for (; i + 8 <= block; i += 8) {
            memcpy(&word, p + done + i, 8);
            seen |= word;
        }
        for (; i < block; i++)
            seen |= p[done + i];
        if (seen & HIGH_BITS) {
            Py_DECREF(text);
            Py_RETURN_NONE;
        }
        memcpy(out + done, p + done, (size_t)block);
    }
    return text;
}

/* A binary's plain value: a str if it is UTF-8, else as make_binary makes it.
 * Remembered as the last binary (see plain_tuple). Strs of fewer than two
 * characters come from PyUnicode_DecodeUTF8, as Python's are, which shares
 * them (their identity matters to plain_tuple). */
static PyObject *plain_binary(Decoder *d, Py_ssize_t at, Py_ssize_t size, int is_map_key)
{
    PyObject *value = NULL;
    if (size >= 2) {
        if ((value = ascii_str(d->buf + at, size)) == NULL)
            return NULL;
        if (value == Py_None)
            Py_CLEAR(value);
    }
    if (value == NULL && utf8_valid(d->buf + at, size)) {
        value = PyUnicode_DecodeUTF8((const char *)d->buf + at, size, NULL);
        if (value == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                return NULL;
            PyErr_Clear();
        }
    }
    if (value == NULL && (value = make_binary(d, at, size, is_map_key)) == NULL)
        return NULL;
    Py_INCREF(value);
    Py_XSETREF(d->last_binary, value);
    d->last_at = at;
    d->last_size = size;
    d->last_was_key = is_map_key;
    return value;
}

/* A tuple's plain value (the tuple consumed). A tuple's last element is read
 * just before it closes, so when that is the last binary's value, its bytes
 * are the last binary's, even if it became a str. */
static PyObject *plain_tuple(Decoder *d, PyObject *tuple)
{
    Py_ssize_t size = PyTuple_GET_SIZE(tuple);
    if (size != 3 && size != 4)
        return tuple;
    PyObject *first = PyTuple_GET_ITEM(tuple, 0);
    if (Py_TYPE(first) != (PyTypeObject *)AtomType
            || PyUnicode_CompareWithASCIIString(first, size == 3 ? "$erlport.opaque" : "tensor"))
        return tuple;
    PyObject *last = PyTuple_GET_ITEM(tuple, size - 1);
    PyObject *data = last;
    if (last == d->last_binary)
        data = make_binary(d, d->last_at, d->last_size, d->last_was_key);
    else
        Py_INCREF(data);
    PyObject *value = NULL;
    if (data != NULL) {
        PyObject *args[2] = {tuple, data};
        value = PyObject_Vectorcall(py_plain_tuple, args, 2, NULL);
        Py_DECREF(data);
    }
    Py_DECREF(tuple);
    return value;
}

/* Whether a key is hashed and compared without running Python code. */
static int plain_key(PyObject *key)
{
    PyTypeObject *type = Py_TYPE(key);
    return type == &PyUnicode_Type || type == (PyTypeObject *)AtomType || type == &PyBytes_Type
        || type == &PyLong_Type || type == &PyFloat_Type || key == Py_True || key == Py_False
        || key == Py_None;
}

/* Keep a plain map's pairs in a list from here on (its dict's, then key and
 * value, both consumed), for plain._map at its end. */
static int plain_pairs(Frame *frame, PyObject *key, PyObject *value)
{
    PyObject *dict = frame->container;
    PyObject *pairs = PyList_New(frame->size);
    PyObject *pair = pairs == NULL ? NULL : PyTuple_New(2);
    if (pair == NULL) {
        Py_XDECREF(pairs);
        Py_DECREF(key);
        Py_DECREF(value);
        return -1;
    }
    PyTuple_SET_ITEM(pair, 0, key);
    PyTuple_SET_ITEM(pair, 1, value);
    PyObject_GC_UnTrack(pairs);   /* empty slots: see push_frame */
    Py_ssize_t position = 0, filled = 0;
    PyObject *earlier_key, *earlier_value;
    while (PyDict_Next(dict, &position, &earlier_key, &earlier_value)) {
        PyObject *earlier = PyTuple_Pack(2, earlier_key, earlier_value);
        if (earlier == NULL) {
            Py_DECREF(pair);
            Py_DECREF(pairs);
            return -1;
        }
        PyList_SET_ITEM(pairs, filled++, earlier);
    }
    PyList_SET_ITEM(pairs, filled++, pair);
    frame->container = pairs;
    frame->filled = filled;
    Py_DECREF(dict);
    return 0;
}

/* Store one pair of a plain map (key and value consumed) in its dict, as
 * dict(pairs) would, or in a list of pairs (plain_pairs). */
static int add_plain_pair(Frame *frame, PyObject *key, PyObject *value)
{
    PyObject *dict = frame->container;
    if (plain_key(key)) {
        Py_ssize_t before = PyDict_GET_SIZE(dict);
        if (PyDict_SetDefault(dict, key, value) == NULL) {
            Py_DECREF(key);
            Py_DECREF(value);
            return -1;
        }
        if (PyDict_GET_SIZE(dict) > before) {
            Py_DECREF(key);
            Py_DECREF(value);
            frame->filled++;
            return 0;
        }
    }
    return plain_pairs(frame, key, value);
}

/* NEW_PID_EXT at `start`: node atom, then id, serial and creation as u32. */
static PyObject *read_pid(Decoder *d, Py_ssize_t start, Py_ssize_t *pos)
{
    Py_ssize_t at = start + 1;
    PyObject *args[4];
    args[0] = read_atom(d, &at);
    if (args[0] == NULL)
        return NULL;
    if (at + 12 > d->end) {
        Py_DECREF(args[0]);
        return malformed(d);
    }
    args[1] = PyLong_FromUnsignedLong(read_u32(d->buf + at));
    args[2] = PyLong_FromUnsignedLong(read_u32(d->buf + at + 4));
    args[3] = PyLong_FromUnsignedLong(read_u32(d->buf + at + 8));
    PyObject *pid = NULL;
    if (args[1] != NULL && args[2] != NULL && args[3] != NULL)
        pid = PyObject_Vectorcall(PidType, args, 4, NULL);
    for (int i = 0; i < 4; i++)
        Py_XDECREF(args[i]);
    *pos = at + 12;
    return pid;
}

/* Any tag this file does not decode: one whole sub-term by the Python decoder. */
static PyObject *delegate_term(Decoder *d, Py_ssize_t start, Py_ssize_t *pos)
{
    if (d->hooks == NULL) {
        if (d->plain)
            d->hooks = PyObject_CallFunctionObjArgs(py_plain_hooks, d->options[OPT_ZERO_COPY],
                                                    d->options[OPT_PID_HOOK],
                                                    d->options[OPT_TUPLE_HOOK], NULL);
        else
            d->hooks = PyTuple_Pack(6, d->options[OPT_ZERO_COPY], d->options[OPT_ATOM_HOOK],
                                    d->options[OPT_BINARY_HOOK], d->options[OPT_MAP_HOOK],
                                    d->options[OPT_TUPLE_HOOK], d->options[OPT_PID_HOOK]);
        if (d->hooks == NULL)
            return NULL;
    }
    PyObject *view = d->zero_copy ? get_view(d) : Py_None;
    if (view == NULL)
        return NULL;
    PyObject *result = PyObject_CallFunction(py_decode_term, "OOnnOn", d->src, view, start,
                                             d->end, d->hooks, d->owed);
    if (result == NULL)
        return NULL;
    PyObject *term = NULL;
    if (PyTuple_CheckExact(result) && PyTuple_GET_SIZE(result) == 2) {
        *pos = PyLong_AsSsize_t(PyTuple_GET_ITEM(result, 1));
        if (!(*pos == -1 && PyErr_Occurred())) {
            term = PyTuple_GET_ITEM(result, 0);
            Py_INCREF(term);
        }
    }
    else
        PyErr_SetString(PyExc_SystemError, "codec.decoder._decode_term returned no (term, end)");
    Py_DECREF(result);
    return term;
}

/* ---- Containers ---- */

/* Open a container of `size` elements (or pairs) owed `slots` terms. */
static int push_frame(Decoder *d, int kind, PyObject *container, Py_ssize_t size,
                      Py_ssize_t slots, Py_ssize_t start)
{
    if (container == NULL)
        return -1;
    if (d->depth == d->capacity) {
        Py_ssize_t capacity = d->capacity * 2;
        Frame *frames = PyMem_Malloc((size_t)capacity * sizeof(Frame));
        if (frames == NULL) {
            Py_DECREF(container);
            PyErr_NoMemory();
            return -1;
        }
        memcpy(frames, d->frames, (size_t)d->depth * sizeof(Frame));
        if (d->frames != d->inline_frames)
            PyMem_Free(d->frames);
        d->frames = frames;
        d->capacity = capacity;
    }
    /* A tuple or list with empty slots must stay out of the garbage
     * collector's sight (gc.get_objects() in a hook) until it is full. */
    if (!PyDict_CheckExact(container))
        PyObject_GC_UnTrack(container);
    d->owed += slots;
    Frame *frame = &d->frames[d->depth++];
    frame->kind = kind;
    frame->container = container;
    frame->pending_key = NULL;
    frame->filled = 0;
    frame->size = size;
    frame->start = start;
    return 0;
}

/* Make room for `more` elements at the end of a list frame's untracked list.
 * It grows by half as much again when full, so a chain of tails costs time
 * linear in its length, and at most 1.5 slots per element still owed. */
static int lengthen_list(Frame *frame, Py_ssize_t more)
{
    PyListObject *list = (PyListObject *)frame->container;
    Py_ssize_t size = frame->size + more;
    if (size > list->allocated) {
        Py_ssize_t allocated = size + size / 2;
        PyObject **items = PyMem_Realloc(list->ob_item, (size_t)allocated * sizeof(PyObject *));
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        list->ob_item = items;
        list->allocated = allocated;
    }
    if (more > 0)   /* an empty list may have no item array at all */
        memset(list->ob_item + frame->size, 0, (size_t)more * sizeof(PyObject *));
    Py_SET_SIZE(list, size);
    frame->size = size;
    return 0;
}

/* Take the innermost container off the stack; the caller owns it. */
static PyObject *pop_frame(Decoder *d)
{
    Frame *frame = &d->frames[--d->depth];
    PyObject *container = frame->container;
    frame->container = NULL;
    if (!PyDict_CheckExact(container))
        PyObject_GC_Track(container);
    return container;
}

/* As codec.decoder._finish_list: elements plus tail into a list or an
 * ImproperList. Consumes both. */
static PyObject *finish_list(PyObject *items, PyObject *tail)
{
    Py_ssize_t count = PyList_GET_SIZE(items);
    if (count == 0) {
        /* LIST_EXT of length 0 is just its tail. */
        Py_DECREF(items);
        return tail;
    }
    if (PyList_CheckExact(tail)) {
        int failed = PyList_GET_SIZE(tail) && PyList_SetSlice(items, count, count, tail) < 0;
        Py_DECREF(tail);
        if (failed) {
            Py_DECREF(items);
            return NULL;
        }
        return items;
    }
    if (Py_TYPE(tail) == (PyTypeObject *)ImproperListType) {
        /* [a | ImproperList([b], c)] is ImproperList([a, b], c). */
        PyObject *more = PyObject_GetAttr(tail, str_items);
        PyObject *inner_tail = more == NULL ? NULL : PyObject_GetAttr(tail, str_tail);
        Py_DECREF(tail);
        tail = inner_tail;
        if (tail == NULL || PyList_SetSlice(items, count, count, more) < 0) {
            Py_XDECREF(more);
            Py_XDECREF(tail);
            Py_DECREF(items);
            return NULL;
        }
        Py_DECREF(more);
    }
    PyObject *args[2] = {PyList_AsTuple(items), tail};
    Py_DECREF(items);
    PyObject *result = args[0] == NULL ? NULL
                       : PyObject_Vectorcall(ImproperListType, args, 2, NULL);
    Py_XDECREF(args[0]);
    Py_DECREF(tail);
    return result;
}

/* Raise the reference's DecodeError for a map holding `key` twice. */
static void raise_duplicate_key(PyObject *key, Py_ssize_t start)
{
    PyObject *error = PyObject_CallFunction(py_duplicate_key, "On", key, start);
    if (error != NULL) {
        PyErr_SetObject(DecodeError, error);
        Py_DECREF(error);
    }
}

/* Store one decoded pair of the innermost map frame; consumes `value` and
 * the pending key. Without map_hook this is Map.from_unique_pairs, one pair
 * at a time. */
static int add_map_pair(Decoder *d, Frame *frame, PyObject *value)
{
    PyObject *key = frame->pending_key;
    frame->pending_key = NULL;
    if (d->plain && PyDict_CheckExact(frame->container))
        return add_plain_pair(frame, key, value);
    PyObject *pair = PyTuple_New(2);
    if (pair == NULL) {
        Py_DECREF(key);
        Py_DECREF(value);
        return -1;
    }
    PyTuple_SET_ITEM(pair, 0, key);
    PyTuple_SET_ITEM(pair, 1, value);
    if (untracked(key) && untracked(value))
        PyObject_GC_UnTrack(pair);   /* as the collector would on its next pass */
    if (PyList_CheckExact(frame->container)) {   /* for map_hook or plain._map */
        PyList_SET_ITEM(frame->container, frame->filled++, pair);
        return 0;
    }
    PyTypeObject *kind = Py_TYPE(key);
    PyObject *exact;
    if (kind == (PyTypeObject *)AtomType || kind == &PyBytes_Type || kind == &PyLong_Type) {
        /* Their own exact key, as in Map.from_unique_pairs. */
        exact = key;
        Py_INCREF(exact);
    }
    else if ((exact = PyObject_CallOneArg(py_exact_key, key)) == NULL) {
        Py_DECREF(pair);
        return -1;
    }
    PyObject *stored = PyDict_SetDefault(frame->container, exact, pair);
    Py_DECREF(exact);
    if (stored == NULL) {
        /* Python turns a KeyError here into its duplicate-key DecodeError. */
        if (PyErr_ExceptionMatches(PyExc_KeyError)) {
            PyErr_Clear();
            raise_duplicate_key(key, frame->start);
        }
    }
    else if (stored != pair)
        raise_duplicate_key(key, frame->start);
    else
        frame->filled++;
    Py_DECREF(pair);
    return stored == pair ? 0 : -1;
}

/* A Map holding `entries` (consumed), built as Map.from_unique_pairs builds it. */
static PyObject *new_map(PyObject *entries)
{
    PyTypeObject *type = (PyTypeObject *)MapType;
    PyObject *map = type->tp_alloc(type, 0);
    if (map == NULL) {
        Py_DECREF(entries);
        return NULL;
    }
    *(PyObject **)((char *)map + map_entries_offset) = entries;
    Py_INCREF(Py_None);
    *(PyObject **)((char *)map + map_hash_offset) = Py_None;
    /* A Map is immutable: when the collector need not see its entries (only
     * atoms, numbers and binaries: see untracked), it need not see the Map. */
    untrack_dict(entries);
    if (untracked(entries))
        PyObject_GC_UnTrack(map);
    return map;
}

/* A map's term from its decoded pairs (consumed): a Map or a plain run's
 * dict from a dict, map_hook's or plain._map's result from a list of pairs. */
static PyObject *finish_map(Decoder *d, PyObject *pairs, Py_ssize_t start)
{
    if (PyDict_CheckExact(pairs) && d->plain) {
        untrack_dict(pairs);
        return pairs;
    }
    if (PyDict_CheckExact(pairs))
        return new_map(pairs);
    PyObject *offset = PyLong_FromSsize_t(start);
    if (offset == NULL) {
        Py_DECREF(pairs);
        return NULL;
    }
    PyObject *args[2] = {pairs, offset};
    PyObject *result = PyObject_Vectorcall(d->plain ? py_plain_map : d->map_hook, args, 2, NULL);
    Py_DECREF(pairs);
    Py_DECREF(offset);
    return result;
}

static PyObject *new_map_container(Decoder *d, Py_ssize_t arity)
{
    return d->map_hook != NULL ? PyList_New(arity) : PyDict_New();
}

/* Decode the leading numbers of a just-opened list straight into it: long
 * numeric lists (tensors, metrics) are common and this skips the general
 * loop's dispatch. Stops at anything else, malformed numbers included, for
 * the general loop to handle. Returns the new offset, or -1 on an exception. */
static Py_ssize_t fill_numbers(Decoder *d, Frame *frame, Py_ssize_t pos)
{
    const unsigned char *buf = d->buf;
    PyObject *list = frame->container;
    Py_ssize_t filled = frame->filled;
    while (filled < frame->size && pos < d->end) {
        PyObject *number;
        if (buf[pos] == SMALL_INTEGER_EXT && pos + 2 <= d->end) {
            number = PyLong_FromLong(buf[pos + 1]);
            pos += 2;
        }
        else if (buf[pos] == INTEGER_EXT && pos + 5 <= d->end) {
            number = PyLong_FromLong((int32_t)read_u32(buf + pos + 1));
            pos += 5;
        }
        else if (buf[pos] == NEW_FLOAT_EXT && pos + 9 <= d->end
                 && isfinite(read_f64(buf + pos + 1))) {
            number = PyFloat_FromDouble(read_f64(buf + pos + 1));
            pos += 9;
        }
        else
            break;
        if (number == NULL) {
            pos = -1;
            break;
        }
        PyList_SET_ITEM(list, filled++, number);
    }
    d->owed -= filled - frame->filled;
    frame->filled = filled;
    return pos;
}

/* ---- The decoding loop ---- */

/* Decode the term at *pos; advance *pos past it. Returns NULL with an
 * exception set, or with d->malformed set and no exception. */
static PyObject *decode_term(Decoder *d, Py_ssize_t *pos_io)
{
    const unsigned char *buf = d->buf;
    const Py_ssize_t end = d->end;
    Py_ssize_t pos = *pos_io;
    PyObject *value;
    for (;;) {
        if (pos >= end)
            return malformed(d);
        Py_ssize_t start = pos;
        unsigned char tag = buf[pos++];
        uint64_t size;
        d->owed -= d->depth > 0;   /* this term is one its container was owed */
        switch (tag) {
        case SMALL_INTEGER_EXT:
            if (pos >= end)
                return malformed(d);
            value = PyLong_FromLong(buf[pos++]);
            break;
        case INTEGER_EXT:
            if (pos + 4 > end)
                return malformed(d);
            value = PyLong_FromLong((int32_t)read_u32(buf + pos));
            pos += 4;
            break;
        case NEW_FLOAT_EXT: {
            if (pos + 8 > end)
                return malformed(d);
            double number = read_f64(buf + pos);
            if (!isfinite(number))
                return malformed(d);
            value = PyFloat_FromDouble(number);
            pos += 8;
            break;
        }
        case SMALL_ATOM_UTF8_EXT:
        case ATOM_EXT:
        case ATOM_UTF8_EXT:
        case SMALL_ATOM_EXT:
            pos = start;
            value = read_atom(d, &pos);
            if (value != NULL && d->plain)
                value = plain_atom(value);
            else if (value != NULL && d->atom_hook != NULL)
                value = apply_hook(d->atom_hook, value);
            break;
        case BINARY_EXT: {
            if (pos + 4 > end)
                return malformed(d);
            size = read_u32(buf + pos);
            pos += 4;
            if (size > (uint64_t)(end - pos))
                return malformed(d);
            int is_map_key = d->depth && d->frames[d->depth - 1].kind == FRAME_MAP
                             && d->frames[d->depth - 1].pending_key == NULL;
            value = d->plain ? plain_binary(d, pos, size, is_map_key)
                             : make_binary(d, pos, size, is_map_key);
            pos += size;
            if (value != NULL && d->binary_hook != NULL)
                value = apply_hook(d->binary_hook, value);
            break;
        }
        case NIL_EXT:
            value = PyList_New(0);
            break;
        case STRING_EXT:
            if (pos + 2 > end)
                return malformed(d);
            size = read_u16(buf + pos);
            pos += 2;
            if (size > (uint64_t)(end - pos))
                return malformed(d);
            value = read_string(d, pos, size);
            pos += size;
            break;
        case SMALL_TUPLE_EXT:
        case LARGE_TUPLE_EXT:
            if (tag == SMALL_TUPLE_EXT) {
                if (pos >= end)
                    return malformed(d);
                size = buf[pos++];
            }
            else {
                if (pos + 4 > end)
                    return malformed(d);
                size = read_u32(buf + pos);
                pos += 4;
            }
            if (!room_for(d, size, pos))
                return malformed(d);
            if (size) {
                if (push_frame(d, FRAME_TUPLE, PyTuple_New(size), size, size, start) < 0)
                    return NULL;
                continue;
            }
            value = PyTuple_New(0);
            if (value != NULL && d->plain)
                value = plain_tuple(d, value);
            if (value != NULL && d->tuple_hook != NULL)
                value = apply_hook(d->tuple_hook, value);
            break;
        case MAP_EXT:
            if (pos + 4 > end)
                return malformed(d);
            size = read_u32(buf + pos);
            pos += 4;
            if (!room_for(d, 2 * size, pos))
                return malformed(d);
            if (size) {
                if (push_frame(d, FRAME_MAP, new_map_container(d, size), size, 2 * size, start) < 0)
                    return NULL;
                continue;
            }
            value = new_map_container(d, 0);
            if (value != NULL)
                value = finish_map(d, value, start);
            break;
        case LIST_EXT:
            if (pos + 4 > end)
                return malformed(d);
            size = read_u32(buf + pos);
            pos += 4;
            if (!room_for(d, size + 1, pos))   /* elements and the tail */
                return malformed(d);
            if (d->depth > 0 && d->frames[d->depth - 1].kind == FRAME_LIST
                    && d->frames[d->depth - 1].filled == d->frames[d->depth - 1].size) {
                /* The tail of the open list: its elements join that list's
                 * (copying the tail once per level would be quadratic). */
                if (lengthen_list(&d->frames[d->depth - 1], (Py_ssize_t)size) < 0)
                    return NULL;
                d->owed += (Py_ssize_t)size + 1;
            }
            else if (push_frame(d, FRAME_LIST, PyList_New(size), size, size + 1, start) < 0)
                return NULL;
            if ((pos = fill_numbers(d, &d->frames[d->depth - 1], pos)) < 0)
                return NULL;
            continue;
        case SMALL_BIG_EXT:
        case LARGE_BIG_EXT:
            value = read_big(d, start, &pos);
            break;
        case NEW_PID_EXT:
            value = read_pid(d, start, &pos);
            if (value != NULL && d->pid_hook != NULL)
                value = apply_hook(d->pid_hook, value);
            break;
        default:
            value = delegate_term(d, start, &pos);
            break;
        }
        if (value == NULL)
            return NULL;

        /* Hand the finished value to the open containers, closing each one
         * that it completes. */
        for (;;) {
            if (d->depth == 0) {
                *pos_io = pos;
                return value;
            }
            Frame *frame = &d->frames[d->depth - 1];
            if (frame->kind == FRAME_TUPLE) {
                PyTuple_SET_ITEM(frame->container, frame->filled++, value);
                if (frame->filled < frame->size)
                    break;
                value = pop_frame(d);
                if (d->plain && (value = plain_tuple(d, value)) == NULL)
                    return NULL;
                if (d->tuple_hook != NULL && (value = apply_hook(d->tuple_hook, value)) == NULL)
                    return NULL;
            }
            else if (frame->kind == FRAME_LIST) {
                if (frame->filled < frame->size) {
                    PyList_SET_ITEM(frame->container, frame->filled++, value);
                    break;
                }
                if ((value = finish_list(pop_frame(d), value)) == NULL)
                    return NULL;
            }
            else {
                if (frame->pending_key == NULL) {
                    frame->pending_key = value;
                    break;
                }
                if (add_map_pair(d, frame, value) < 0)
                    return NULL;
                if (frame->filled < frame->size)
                    break;
                Py_ssize_t opened = frame->start;
                if ((value = finish_map(d, pop_frame(d), opened)) == NULL)
                    return NULL;
            }
        }
    }
}

/* ---- Frames and the entry points ---- */

/* The compressed frame whose tag 80 is at `pos`: inflated by Python, decoded
 * here. Returns the term, its end offset in *end, or NULL (exception, or
 * d->malformed). */
static PyObject *decode_compressed(Decoder *outer, Py_ssize_t pos, Py_ssize_t *end)
{
    PyObject *inflated = PyObject_CallFunction(py_inflate, "OnnO", outer->src, pos, outer->end,
                                               outer->options[OPT_MAX_INFLATED_SIZE]);
    if (inflated == NULL)
        return NULL;
    PyObject *bytes = PyTuple_GET_ITEM(inflated, 0);
    if (!PyBytes_CheckExact(bytes)) {
        Py_DECREF(inflated);
        PyErr_SetString(PyExc_SystemError, "codec.decoder._inflate returned no bytes");
        return NULL;
    }
    Decoder d;
    decoder_init(&d, (const unsigned char *)PyBytes_AS_STRING(bytes), PyBytes_GET_SIZE(bytes),
                 bytes, NULL, outer->options);
    d.plain = outer->plain;
    Py_ssize_t used = 0;
    PyObject *term = decode_term(&d, &used);
    outer->malformed = d.malformed || (term != NULL && used != d.end);
    decoder_clear(&d);
    PyObject *result = NULL;
    if (term != NULL && !outer->malformed) {
        *end = PyLong_AsSsize_t(PyTuple_GET_ITEM(inflated, 1));
        if (!(*end == -1 && PyErr_Occurred())) {
            result = term;
            Py_INCREF(result);
        }
    }
    else if (term == NULL && !outer->malformed && PyErr_ExceptionMatches(DecodeError)) {
        /* A hook's DecodeError: Python reports it as inside the compressed term. */
        PyObject *type, *exc, *traceback;
        PyErr_Fetch(&type, &exc, &traceback);
        PyErr_NormalizeException(&type, &exc, &traceback);
        PyObject *offset = PyObject_GetAttr(exc, str_offset);
        PyObject *reason = offset == NULL ? NULL : PyObject_GetAttr(exc, str_reason);
        PyObject *message = reason == NULL ? NULL : PyUnicode_FromFormat(
            "in compressed term at inflated offset %S: %S", offset, reason);
        PyObject *wrapped = message == NULL ? NULL
                            : PyObject_CallFunction(DecodeError, "On", message, pos);
        if (wrapped != NULL) {
            PyException_SetContext(wrapped, exc);   /* steals exc */
            exc = NULL;
            PyException_SetCause(wrapped, NULL);   /* `from None` */
            PyErr_SetObject(DecodeError, wrapped);
            Py_DECREF(wrapped);
        }
        Py_XDECREF(offset);
        Py_XDECREF(reason);
        Py_XDECREF(message);
        Py_XDECREF(type);
        Py_XDECREF(exc);
        Py_XDECREF(traceback);
    }
    Py_XDECREF(term);
    Py_DECREF(inflated);
    return result;
}

/* As codec.decoder._decode_frame: the term of the frame at `offset` (its end
 * offset in *end), or NULL. */
static PyObject *decode_frame(Decoder *d, Py_ssize_t offset, Py_ssize_t *end)
{
    if (offset < 0 || offset >= d->end || d->buf[offset] != VERSION || offset + 1 >= d->end)
        return malformed(d);
    *end = offset + 1;
    if (d->buf[*end] == COMPRESSED)
        return decode_compressed(d, *end, end);
    return decode_term(d, end);
}

/* Sort the call's keyword arguments into `options`; 0 when one is not a
 * keyword of the function called (the Python function then handles the
 * call): codec.plain's take no atom, binary or map hook. */
static int parse_options(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                         PyObject **options, int plain)
{
    options[OPT_ZERO_COPY] = Py_False;
    options[OPT_MAX_INFLATED_SIZE] = default_max_inflated_size;
    for (int i = OPT_ATOM_HOOK; i < OPT_COUNT; i++)
        options[i] = Py_None;
    Py_ssize_t count = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        int found = -1;
        for (int i = 0; i < OPT_COUNT && found < 0; i++)
            if (name == option_strings[i])
                found = i;
        for (int i = 0; i < OPT_COUNT && found < 0; i++)
            if (PyUnicode_Compare(name, option_strings[i]) == 0)
                found = i;
        if (found < 0 || (plain && (found == OPT_ATOM_HOOK || found == OPT_BINARY_HOOK
                                    || found == OPT_MAP_HOOK)))
            return 0;
        options[found] = args[nargs + k];
    }
    /* The Python decoder tests zero_copy's truth at different moments;
     * only plain bools are sure to behave the same here. */
    return options[OPT_ZERO_COPY] == Py_True || options[OPT_ZERO_COPY] == Py_False;
}

/* The input is malformed: the reference decoder finds the error to report,
 * reading the same bytes. Decoding has no side effects but the hooks', and
 * they (or the plain mapping, codec.plain's hooks) already ran on every value
 * before the fault (in the reference's order), so they are not run again:
 * the raw reference (`raw`) re-reads the input with none, and without the
 * duplicate-key check, made here on the hooks' results. Only if it then
 * found nothing wrong (a bug here) does the reference decode once more, with
 * the hooks, to give its result. */
static PyObject *report_malformed(PyObject *reference, PyObject *raw, int plain,
                                  PyObject *const *args, size_t nargsf, PyObject *kwnames,
                                  PyObject *const *options)
{
    int hooked = plain;
    for (int i = OPT_ATOM_HOOK; i < OPT_COUNT; i++)
        hooked |= options[i] != Py_None;
    if (!hooked)
        return PyObject_Vectorcall(reference, args, nargsf, kwnames);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *positional = PyTuple_New(nargs);
    PyObject *keywords = PyDict_New();
    int ok = positional != NULL && keywords != NULL
             && PyDict_SetItem(keywords, option_strings[OPT_ZERO_COPY], options[OPT_ZERO_COPY]) == 0
             && PyDict_SetItem(keywords, option_strings[OPT_MAX_INFLATED_SIZE],
                               options[OPT_MAX_INFLATED_SIZE]) == 0
             && PyDict_SetItem(keywords, option_strings[OPT_MAP_HOOK], py_unchecked_map) == 0;
    PyObject *result = NULL;
    if (ok) {
        for (Py_ssize_t i = 0; i < nargs; i++) {
            Py_INCREF(args[i]);
            PyTuple_SET_ITEM(positional, i, args[i]);
        }
        result = PyObject_Call(raw, positional, keywords);
    }
    Py_XDECREF(positional);
    Py_XDECREF(keywords);
    if (result == NULL)
        return NULL;
    Py_DECREF(result);
    return PyObject_Vectorcall(reference, args, nargsf, kwnames);
}

/* decode / decode_from, raw or `plain` (codec.plain's): `reference` is the
 * Python function of the same name. */
static PyObject *decode_call(PyObject *reference, int plain, int whole_input,
                             PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *options[OPT_COUNT];
    Py_ssize_t offset = 0;
    int plain_call = nargs >= 1 && nargs <= (whole_input ? 1 : 2)
                     && parse_options(args, nargs, kwnames, options, plain);
    if (plain_call && nargs == 2) {
        plain_call = PyLong_CheckExact(args[1]);
        if (plain_call && (offset = PyLong_AsSsize_t(args[1])) == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            plain_call = 0;
        }
    }
    if (!plain_call)
        return PyObject_Vectorcall(reference, args, nargsf, kwnames);

    PyObject *data = args[0];
    PyObject *view = NULL;
    Py_buffer buffer;
    const unsigned char *buf;
    Py_ssize_t size;
    if (PyBytes_CheckExact(data)) {
        buf = (const unsigned char *)PyBytes_AS_STRING(data);
        size = PyBytes_GET_SIZE(data);
    }
    else {
        /* The reference's own view: same TypeErrors, same zero-copy slices. */
        view = PyObject_CallOneArg(py_byte_view, data);
        if (view == NULL)
            return NULL;
        if (PyObject_GetBuffer(view, &buffer, PyBUF_SIMPLE) < 0) {
            Py_DECREF(view);
            return NULL;
        }
        buf = buffer.buf;
        size = buffer.len;
    }
    Decoder d;
    decoder_init(&d, buf, size, view != NULL ? view : data, view, options);
    d.plain = plain;
    Py_ssize_t used = 0;
    PyObject *result = decode_frame(&d, offset, &used);
    decoder_clear(&d);
    if (view != NULL) {
        PyBuffer_Release(&buffer);
        Py_DECREF(view);
    }
    if (result != NULL && !whole_input)
        result = Py_BuildValue("(Nn)", result, used);
    else if (result != NULL) {
        if (used != size) {
            Py_DECREF(result);
            PyObject *error = PyObject_CallFunction(
                DecodeError, "Nn", PyUnicode_FromFormat("%zd trailing bytes after the term",
                                                        size - used), used);
            if (error != NULL) {
                PyErr_SetObject(DecodeError, error);
                Py_DECREF(error);
            }
            return NULL;
        }
    }
    if (result != NULL || !d.malformed)
        return result;
    return report_malformed(reference, whole_input ? py_decode : py_decode_from, plain, args,
                            nargsf, kwnames, options);
}

static PyObject *cdecode_decode(PyObject *module, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames)
{
    (void)module;
    return decode_call(py_decode, 0, 1, args, nargsf, kwnames);
}

static PyObject *cdecode_decode_from(PyObject *module, PyObject *const *args, size_t nargsf,
                                     PyObject *kwnames)
{
    (void)module;
    return decode_call(py_decode_from, 0, 0, args, nargsf, kwnames);
}

static PyObject *attribute(PyObject *owner, const char *name);

/* codec.plain's functions this file calls, on the first plain call. */
static int load_plain(void)
{
    if (py_plain_decode != NULL)
        return 0;
    PyObject *plain = PyImport_ImportModule("codec.plain");
    int status = plain != NULL
        && (py_plain_map = attribute(plain, "_map"))
        && (py_plain_tuple = attribute(plain, "_tuple_value"))
        && (py_plain_hooks = attribute(plain, "_delegated_hooks"))
        && (py_plain_decode_from = attribute(plain, "reference_decode_from"))
        && (py_plain_decode = attribute(plain, "reference_decode")) ? 0 : -1;
    Py_XDECREF(plain);
    return status;
}

static PyObject *cdecode_plain_decode(PyObject *module, PyObject *const *args, size_t nargsf,
                                      PyObject *kwnames)
{
    (void)module;
    if (load_plain() < 0)
        return NULL;
    return decode_call(py_plain_decode, 1, 1, args, nargsf, kwnames);
}

static PyObject *cdecode_plain_decode_from(PyObject *module, PyObject *const *args,
                                           size_t nargsf, PyObject *kwnames)
{
    (void)module;
    if (load_plain() < 0)
        return NULL;
    return decode_call(py_plain_decode_from, 1, 0, args, nargsf, kwnames);
}

/* ---- Module set-up ---- */

static PyObject *attribute(PyObject *owner, const char *name)
{
    return PyObject_GetAttrString(owner, name);
}

/* Where the slot `name` of Map lives in an instance, or -1. */
static Py_ssize_t slot_offset(const char *name)
{
    PyObject *descriptor = attribute(MapType, name);
    Py_ssize_t offset = -1;
    if (descriptor == NULL)
        return -1;
    if (Py_IS_TYPE(descriptor, &PyMemberDescr_Type))
        offset = ((PyMemberDescrObject *)descriptor)->d_member->offset;
    else
        PyErr_Format(PyExc_ImportError, "codec.terms.Map.%s is not a slot", name);
    Py_DECREF(descriptor);
    return offset;
}

static int load_python_side(void)
{
    PyObject *decoder = PyImport_ImportModule("codec.decoder");
    PyObject *terms = decoder == NULL ? NULL : PyImport_ImportModule("codec.terms");
    PyObject *errors = terms == NULL ? NULL : PyImport_ImportModule("codec.errors");
    int status = -1;
    if (errors != NULL
            && (AtomType = attribute(terms, "Atom")) && (MapType = attribute(terms, "Map"))
            && (ImproperListType = attribute(terms, "ImproperList"))
            && (PidType = attribute(terms, "Pid")) && (py_exact_key = attribute(terms, "exact_key"))
            && (DecodeError = attribute(errors, "DecodeError"))
            && (py_decode = attribute(decoder, "decode"))
            && (py_decode_from = attribute(decoder, "decode_from"))
            && (py_decode_term = attribute(decoder, "_decode_term"))
            && (py_inflate = attribute(decoder, "_inflate"))
            && (py_byte_view = attribute(decoder, "_byte_view"))
            && (py_duplicate_key = attribute(decoder, "_duplicate_key"))
            && (py_unchecked_map = attribute(decoder, "_unchecked_map"))
            && (default_max_inflated_size = attribute(decoder, "DEFAULT_MAX_INFLATED_SIZE"))
            && (map_entries_offset = slot_offset("_entries")) >= 0
            && (map_hash_offset = slot_offset("_hash")) >= 0
            && (str_items = PyUnicode_InternFromString("items"))
            && (str_tail = PyUnicode_InternFromString("tail"))
            && (str_offset = PyUnicode_InternFromString("offset"))
            && (str_reason = PyUnicode_InternFromString("reason")))
        status = 0;
    for (int i = 0; status == 0 && i < OPT_COUNT; i++)
        if ((option_strings[i] = PyUnicode_InternFromString(option_names[i])) == NULL)
            status = -1;
    Py_XDECREF(decoder);
    Py_XDECREF(terms);
    Py_XDECREF(errors);
    return status;
}

static PyMethodDef cdecode_methods[] = {
    {"decode", (PyCFunction)(void (*)(void))cdecode_decode, METH_FASTCALL | METH_KEYWORDS,
     "decode(data, *, zero_copy=False, max_inflated_size=DEFAULT_MAX_INFLATED_SIZE, "
     "atom_hook=None, binary_hook=None, map_hook=None, tuple_hook=None, pid_hook=None)\n--\n\n"
     "Decode one whole ETF frame (leading 131, no trailing bytes) into a term."},
    {"decode_from", (PyCFunction)(void (*)(void))cdecode_decode_from,
     METH_FASTCALL | METH_KEYWORDS,
     "decode_from(data, offset=0, *, zero_copy=False, "
     "max_inflated_size=DEFAULT_MAX_INFLATED_SIZE, atom_hook=None, binary_hook=None, "
     "map_hook=None, tuple_hook=None, pid_hook=None)\n--\n\n"
     "Decode the term starting at data[offset] (its 131); return (term, end_offset)."},
    {"plain_decode", (PyCFunction)(void (*)(void))cdecode_plain_decode,
     METH_FASTCALL | METH_KEYWORDS,
     "plain_decode(data, *, zero_copy=False, max_inflated_size=DEFAULT_MAX_INFLATED_SIZE, "
     "pid_hook=None, tuple_hook=None)\n--\n\n"
     "codec.plain.reference_decode in C: one whole ETF frame into plain Python values."},
    {"plain_decode_from", (PyCFunction)(void (*)(void))cdecode_plain_decode_from,
     METH_FASTCALL | METH_KEYWORDS,
     "plain_decode_from(data, offset=0, *, zero_copy=False, "
     "max_inflated_size=DEFAULT_MAX_INFLATED_SIZE, pid_hook=None, tuple_hook=None)\n--\n\n"
     "codec.plain.reference_decode_from in C: (plain value, end_offset)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef cdecode_module = {
    PyModuleDef_HEAD_INIT, "codec._cdecode",
    "The C decoder of the External Term Format; same API and results as codec.decoder.",
    -1, cdecode_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__cdecode(void)
{
    if (load_python_side() < 0)
        return NULL;
    return PyModule_Create(&cdecode_module);
}
