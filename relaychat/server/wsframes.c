/* _relaychat_wsframes: the two per-frame loops of relaychat/server/wsframes.py in C.
 *
 * Why C: on a read of many short masked text frames, the Python loop costs
 * about 0.6 us per frame (header walk 0.24, the unmasking call 0.26, the
 * hand-over 0.1) and the output 0.18 us per line, more than the hub spends
 * relaying the line (bench/README.rst, issue 17). No well-kept library has a
 * sans-IO compiled frame loop (websockets' C covers masking only; aiohttp's
 * and picows' readers are tied to asyncio), so this is ours: two functions,
 * no state, and the Python code in wsframes.py stays the reference the tests
 * compare these with (tests/test_wsframes_compiled.py) and the fallback
 * where no compiler built this.
 *
 * read_text_frames(data, start, limit) -> (lines, end, odd)
 *     Walks the whole masked FIN text frames (7-, 16- or 64-bit length, at
 *     most `limit` bytes of payload) from data[start:] and returns their
 *     payloads unmasked, each followed by LF, in one bytes object; `end` is
 *     where it stopped. It stops at the first frame that is anything else
 *     (control, fragment, binary, reserved bits, unmasked, over the limit,
 *     not whole yet): the Python code handles that one, with its errors and
 *     close codes. A message that is not one clean line (holds an LF, or is
 *     not valid UTF-8) ends the walk too: it is returned unmasked as `odd`
 *     (else None) with `end` after it, so that Python decides what becomes
 *     of it and of its run, exactly as for its own messages.
 *
 * write_text_frames(data) -> (frames, end)
 *     Each LF-terminated line of data becomes one unmasked server text frame
 *     (without its LF); `end` is just after the last LF (the rest is a line
 *     the hub has not finished writing).
 *
 * Network-facing code: every length is checked against what is left of the
 * buffer before it is used, 64-bit lengths against the limit before any
 * arithmetic, and nothing is read outside the Py_buffer.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Unmask n bytes of `in` into `out` with the 4-byte key, eight bytes at a
 * time (memcpy: no alignment assumed). Returns whether any byte has its high
 * bit set, that is, whether the message is not plain ASCII. */
static int
unmask(unsigned char *out, const unsigned char *in, Py_ssize_t n, const unsigned char *key)
{
    unsigned char key8[8];
    uint64_t k, word, high = 0;
    Py_ssize_t j = 0;

    memcpy(key8, key, 4);
    memcpy(key8 + 4, key, 4);
    memcpy(&k, key8, 8);
    for (; n - j >= 8; j += 8) {
        memcpy(&word, in + j, 8);
        word ^= k;
        memcpy(out + j, &word, 8);
        high |= word;
    }
    high &= UINT64_C(0x8080808080808080);
    for (; j < n; j++) {  /* j is a multiple of 8 here, so the key index stays j & 3 */
        out[j] = in[j] ^ key[j & 3];
        high |= out[j] & 0x80;
    }
    return high != 0;
}

/* Whether an unmasked message can go to the hub as one line: no LF, and
 * valid UTF-8. Non-ASCII messages are checked by CPython's own decoder, so
 * the verdict is bytes.decode("utf-8")'s, the one the Python path gives.
 * 1 yes, 0 no, -1 error (an exception is set). */
static int
one_line(const unsigned char *s, Py_ssize_t n, int ascii)
{
    PyObject *text;

    if (memchr(s, '\n', (size_t)n) != NULL)
        return 0;
    if (ascii)
        return 1;
    text = PyUnicode_DecodeUTF8((const char *)s, n, "strict");
    if (text != NULL) {
        Py_DECREF(text);
        return 1;
    }
    if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        return 0;
    }
    return -1;  /* MemoryError and the like: raised */
}

/* If the `avail` bytes at p begin with a whole masked FIN text frame whose
 * payload is at most `limit` bytes, the size of its header (with the mask
 * key), its payload length in *length; else 0. */
static Py_ssize_t
text_frame(const unsigned char *p, Py_ssize_t avail, Py_ssize_t limit, Py_ssize_t *length)
{
    uint64_t n;
    Py_ssize_t head, k;

    if (avail < 2 || p[0] != 0x81 || !(p[1] & 0x80))  /* FIN, no reserved bits, text; masked */
        return 0;
    n = p[1] & 0x7F;
    head = 2;
    if (n == 126) {
        if (avail < 4)
            return 0;
        n = ((uint64_t)p[2] << 8) | p[3];
        head = 4;
    }
    else if (n == 127) {
        if (avail < 10)
            return 0;
        for (n = 0, k = 2; k < 10; k++)
            n = (n << 8) | p[k];
        head = 10;
    }
    head += 4;  /* the masking key */
    if (limit < 0 || n > (uint64_t)limit || avail < head || n > (uint64_t)(avail - head))
        return 0;
    *length = (Py_ssize_t)n;  /* <= limit, so it fits */
    return head;
}

static PyObject *
read_text_frames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    const unsigned char *data;
    unsigned char *out = NULL;
    Py_ssize_t start, limit, size, i, head, n, room = 0, used = 0;
    PyObject *lines = NULL, *odd = NULL, *result = NULL;
    int ascii, line;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "read_text_frames(data, start, limit) takes 3 arguments");
        return NULL;
    }
    start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    limit = PyLong_AsSsize_t(args[2]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    data = (const unsigned char *)view.buf;
    size = view.len;
    if (start < 0 || start > size) {
        PyErr_SetString(PyExc_ValueError, "start is outside the data");
        goto done;
    }
    for (i = start; (head = text_frame(data + i, size - i, limit, &n)) > 0; ) {
        if (out == NULL) {
            /* Room for what is left of the data: each frame adds its payload
             * and one LF but takes at least 6 bytes more than its payload,
             * so the lines are always shorter than the frames they come from. */
            room = size - i;
            lines = PyBytes_FromStringAndSize(NULL, room);
            if (lines == NULL)
                goto done;
            out = (unsigned char *)PyBytes_AS_STRING(lines);
        }
        if (n + 1 > room - used) {  /* cannot happen (see above); checked all the same */
            PyErr_SetString(PyExc_SystemError, "read_text_frames: output overflow");
            goto done;
        }
        ascii = !unmask(out + used, data + i + head, n, data + i + head - 4);
        i += head + n;
        line = one_line(out + used, n, ascii);
        if (line < 0)
            goto done;
        if (!line) {
            odd = PyBytes_FromStringAndSize((const char *)out + used, n);
            if (odd == NULL)
                goto done;
            break;
        }
        used += n;
        out[used++] = '\n';
    }
    if (lines == NULL)
        lines = PyBytes_FromStringAndSize(NULL, 0);
    else
        _PyBytes_Resize(&lines, used);  /* shorter: used <= room - 6; on failure it sets lines to NULL */
    if (lines == NULL)
        goto done;
    result = PyTuple_New(3);
    if (result == NULL)
        goto done;
    PyTuple_SET_ITEM(result, 0, lines);  /* the tuple takes these references */
    PyTuple_SET_ITEM(result, 1, PyLong_FromSsize_t(i));
    PyTuple_SET_ITEM(result, 2, odd != NULL ? odd : Py_NewRef(Py_None));
    lines = odd = NULL;
    if (PyTuple_GET_ITEM(result, 1) == NULL)
        Py_CLEAR(result);
done:
    Py_XDECREF(lines);
    Py_XDECREF(odd);
    PyBuffer_Release(&view);
    return result;
}

/* The header of a server text frame with an n-byte payload; its size. */
static Py_ssize_t
text_head(unsigned char *out, Py_ssize_t n)
{
    int k;

    out[0] = 0x81;
    if (n < 126) {
        out[1] = (unsigned char)n;
        return 2;
    }
    if (n < 65536) {
        out[1] = 126;
        out[2] = (unsigned char)(n >> 8);
        out[3] = (unsigned char)n;
        return 4;
    }
    out[1] = 127;
    for (k = 0; k < 8; k++)
        out[2 + k] = (unsigned char)((uint64_t)n >> (56 - 8 * k));
    return 10;
}

static PyObject *
write_text_frames(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    const char *data, *p, *end, *lf;
    unsigned char *out, scratch[10];
    Py_ssize_t total = 0, taken, n;
    PyObject *frames = NULL, *result = NULL;

    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    /* Each line adds at most a 10-byte header for its LF, 1 byte at least:
     * the frames are at most 10 times the data. */
    if (view.len > PY_SSIZE_T_MAX / 10) {
        PyErr_NoMemory();
        goto done;
    }
    data = (const char *)view.buf;
    end = data + view.len;
    for (p = data; (lf = memchr(p, '\n', (size_t)(end - p))) != NULL; p = lf + 1) {
        n = lf - p;
        total += text_head(scratch, n) + n;
    }
    taken = p - data;
    frames = PyBytes_FromStringAndSize(NULL, total);
    if (frames == NULL)
        goto done;
    out = (unsigned char *)PyBytes_AS_STRING(frames);
    for (p = data; p < data + taken; p = lf + 1) {
        lf = memchr(p, '\n', (size_t)(data + taken - p));
        if (lf == NULL)  /* cannot happen: the first pass found it */
            break;
        n = lf - p;
        out += text_head(out, n);
        memcpy(out, p, (size_t)n);
        out += n;
    }
    result = Py_BuildValue("(On)", frames, taken);
done:
    Py_XDECREF(frames);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"read_text_frames", (PyCFunction)(void (*)(void))read_text_frames, METH_FASTCALL,
     "read_text_frames(data, start, limit) -> (lines, end, odd): whole masked text frames unmasked into lines."},
    {"write_text_frames", write_text_frames, METH_O,
     "write_text_frames(data) -> (frames, end): each LF-terminated line as one server text frame."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef wsframes_module = {
    PyModuleDef_HEAD_INIT, "_relaychat_wsframes",
    "The per-frame loops of relaychat.server.wsframes in C (relaychat/server/wsframes.c).",
    0, methods,
};

PyMODINIT_FUNC
PyInit__relaychat_wsframes(void)
{
    return PyModule_Create(&wsframes_module);
}
