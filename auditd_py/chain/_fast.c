/*
 * The per-record loop of sealing and verifying, compiled (docs/FORMAT.md 8, 9, 10).
 *
 * The same steps as auditd_py/chain/seal.py (Sealer.seal_many) and
 * auditd_py/chain/verify.py (Verifier.records, the fast path), over many records
 * per call: leaf hash, chain link, MAC, Merkle append and the seal suffix. The
 * hashing is libsodium's crypto_generichash (BLAKE2b, keyed for the MAC); nothing
 * here is a cryptographic primitive of its own. Pure: no I/O, no clock.
 *
 * verify_run() accepts only lines that the pure fast path accepts and stops at the
 * first line it does not, so that the pure slow path (the reference, with its
 * diagnostics) decides every other line: the verdicts are the pure ones.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define D 32                       /* digest size */
#define HEXD 64                    /* its hex spelling */
#define SUFFIX 149                 /* ,"link":"<64>","mac":"<64>"}\n */
#define MAX_STACK 64               /* a compact range holds one node per bit of seq */

static const char LINK_OPEN[] = ",\"link\":\"";   /* 9 bytes */
static const char MAC_OPEN[] = "\",\"mac\":\"";   /* 9 bytes */
static const char SOURCE_KEY[] = ",\"source\":";  /* 10 bytes */
static const char META_MARK[] = "\"source\":\"auditd-py\",";  /* 21 bytes */

static crypto_generichash_state leaf0, link0, node0;  /* tag absorbed, copied per use */

static const char HEX[] = "0123456789abcdef";

static void hexify(char *out, const unsigned char *in)
{
    for (int i = 0; i < D; i++) {
        out[2 * i] = HEX[in[i] >> 4];
        out[2 * i + 1] = HEX[in[i] & 15];
    }
}

static int unhex_lower(unsigned char *out, const char *in)
{
    for (int i = 0; i < D; i++) {
        int v = 0;
        for (int j = 0; j < 2; j++) {
            char c = in[2 * i + j];
            int d;
            if (c >= '0' && c <= '9')
                d = c - '0';
            else if (c >= 'a' && c <= 'f')
                d = c - 'a' + 10;
            else
                return 0;
            v = v * 16 + d;
        }
        out[i] = (unsigned char)v;
    }
    return 1;
}

/* Constant-time equality of n bytes (n a multiple of 8): for the MAC, which is secret
 * until it matches. (sodium_memcmp does the same a byte at a time, much slower.) */
static int ct_equal(const char *a, const char *b, size_t n)
{
    uint64_t d = 0;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        d |= x ^ y;
    }
    return d == 0;
}

/* The decimal spelling of v >= 0 at p; returns its length. */
static int put_int(char *p, long long v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

/* The chain state one call works on: a C copy of the Python objects. */
typedef struct {
    long long seq;
    unsigned char link[D], mac[D];
    unsigned char stack[MAX_STACK][D];
    int depth;
    crypto_generichash_state key;  /* keyed, TAG_MAC absorbed */
    int keyed;
} chain_t;

/* leaf hash and link of a body, then the Merkle append of the leaf */
static void step(chain_t *c, const unsigned char *body, size_t n, unsigned char *leaf,
                 unsigned char *link)
{
    crypto_generichash_state st = leaf0;
    crypto_generichash_update(&st, body, n);
    crypto_generichash_final(&st, leaf, D);
    st = link0;
    crypto_generichash_update(&st, c->link, D);
    crypto_generichash_update(&st, c->mac, D);
    crypto_generichash_update(&st, leaf, D);
    crypto_generichash_final(&st, link, D);
}

static void mac_of(const chain_t *c, const unsigned char *link, unsigned char *tag)
{
    crypto_generichash_state st = c->key;
    crypto_generichash_update(&st, link, D);
    crypto_generichash_final(&st, tag, D);
}

static void merkle_append(chain_t *c, const unsigned char *leaf)
{
    unsigned char node[D];
    memcpy(node, leaf, D);
    long long k = c->seq;
    while (k & 1) {
        crypto_generichash_state st = node0;
        c->depth--;
        crypto_generichash_update(&st, c->stack[c->depth], D);
        crypto_generichash_update(&st, node, D);
        crypto_generichash_final(&st, node, D);
        k >>= 1;
    }
    memcpy(c->stack[c->depth], node, D);
    c->depth++;
}

/* ------------------------------------------------------------ Python <-> chain_t */

static int get32(PyObject *o, unsigned char *out, const char *what)
{
    if (!PyBytes_Check(o) || PyBytes_GET_SIZE(o) != D) {
        PyErr_Format(PyExc_ValueError, "%s must be 32 bytes", what);
        return -1;
    }
    memcpy(out, PyBytes_AS_STRING(o), D);
    return 0;
}

static int load(chain_t *c, long long seq, PyObject *link, PyObject *mac, PyObject *key,
                PyObject *stack)
{
    c->seq = seq;
    if (seq < 0) {
        PyErr_SetString(PyExc_ValueError, "seq must not be negative");
        return -1;
    }
    if (get32(link, c->link, "link") < 0 || get32(mac, c->mac, "mac") < 0)
        return -1;
    c->keyed = key != Py_None;
    if (c->keyed) {
        unsigned char k[D];
        const unsigned char tag = 0x03;
        if (get32(key, k, "key") < 0)
            return -1;
        crypto_generichash_init(&c->key, k, D, D);
        crypto_generichash_update(&c->key, &tag, 1);
        sodium_memzero(k, D);
    }
    if (!PyList_Check(stack)) {
        PyErr_SetString(PyExc_TypeError, "stack must be a list");
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(stack);
    if (n != __builtin_popcountll((unsigned long long)seq)) {
        PyErr_SetString(PyExc_ValueError, "stack does not fit seq");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (get32(PyList_GET_ITEM(stack, i), c->stack[i], "stack node") < 0)
            return -1;
    c->depth = (int)n;
    return 0;
}

/* Write the C stack back into the Python list, in place; 0 or -1. */
static int store_stack(const chain_t *c, PyObject *stack)
{
    PyObject *nodes = PyList_New(c->depth);
    if (nodes == NULL)
        return -1;
    for (int i = 0; i < c->depth; i++) {
        PyObject *b = PyBytes_FromStringAndSize((const char *)c->stack[i], D);
        if (b == NULL) {
            Py_DECREF(nodes);
            return -1;
        }
        PyList_SET_ITEM(nodes, i, b);
    }
    int rc = PyList_SetSlice(stack, 0, PyList_GET_SIZE(stack), nodes);
    Py_DECREF(nodes);
    return rc;
}

static void cleanse(chain_t *c) { sodium_memzero(&c->key, sizeof c->key); }

/* ------------------------------------------------------------ seal */

PyDoc_STRVAR(seal_doc,
"seal(bodies, seq, link, mac, key, stack) -> (lines, link, mac)\n\n"
"Seal record bodies numbered from seq: the joined lines (each body, its seal\n"
"suffix and a newline), the last link and MAC. ``stack`` (the Merkle compact\n"
"range) is updated in place.");

static PyObject *seal(PyObject *self, PyObject *args)
{
    PyObject *bodies, *link, *mac, *key, *stack;
    long long seq;
    chain_t c;
    if (!PyArg_ParseTuple(args, "O!LOOOO", &PyList_Type, &bodies, &seq, &link, &mac, &key,
                          &stack))
        return NULL;
    if (key == Py_None) {
        PyErr_SetString(PyExc_ValueError, "sealing needs the MAC key");
        return NULL;
    }
    if (load(&c, seq, link, mac, key, stack) < 0) {
        cleanse(&c);
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(bodies);
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *b = PyList_GET_ITEM(bodies, i);
        if (!PyBytes_Check(b)) {
            cleanse(&c);
            PyErr_SetString(PyExc_TypeError, "bodies must be bytes");
            return NULL;
        }
        total += PyBytes_GET_SIZE(b) + SUFFIX;
    }
    if (c.seq > (1LL << 62) - n) {  /* the stack fits, and %lld is what Python formats */
        cleanse(&c);
        PyErr_SetString(PyExc_OverflowError, "seq out of range");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) {
        cleanse(&c);
        return NULL;
    }
    /* the list is the caller's own and bytes are immutable: hash without the GIL */
    char *p = PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *b = PyList_GET_ITEM(bodies, i);
        size_t len = (size_t)PyBytes_GET_SIZE(b);
        const unsigned char *body = (const unsigned char *)PyBytes_AS_STRING(b);
        unsigned char leaf[D], link2[D], tag[D];
        step(&c, body, len, leaf, link2);
        mac_of(&c, link2, tag);
        merkle_append(&c, leaf);
        c.seq++;
        memcpy(c.link, link2, D);
        memcpy(c.mac, tag, D);
        memcpy(p, body, len);
        p += len;
        memcpy(p, LINK_OPEN, 9);
        hexify(p + 9, link2);
        memcpy(p + 73, MAC_OPEN, 9);
        hexify(p + 82, tag);
        memcpy(p + 146, "\"}\n", 3);
        p += SUFFIX;
    }
    Py_END_ALLOW_THREADS
    cleanse(&c);
    if (store_stack(&c, stack) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return Py_BuildValue("(Ny#y#)", out, (const char *)c.link, (Py_ssize_t)D,
                         (const char *)c.mac, (Py_ssize_t)D);
}

/* ------------------------------------------------------------ record bodies */

/* Strict UTF-8, as Python's decoder: no overlongs, no surrogates, nothing past U+10FFFF. */
#define ONES 0x0101010101010101ULL
#define HIGH 0x8080808080808080ULL

static uint64_t load64(const unsigned char *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

static int valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n && !(load64(s + i) & HIGH)) {  /* eight ASCII bytes */
            i += 8;
            continue;
        }
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            k = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else
            return 0;
        if (i + k >= n)  /* truncated sequence */
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t j = 2; j <= k; j++)
            if (s[i + j] < 0x80 || s[i + j] > 0xBF)
                return 0;
        i += k + 1;
    }
    return 1;
}

/* A JSON string as orjson writes it (docs/FORMAT.md 1, "Compact JSON"); returns the end. */
static char *json_str(char *p, const unsigned char *s, size_t n)
{
    *p++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (i + 8 <= n) {  /* eight bytes that need no escape: no control byte, '"' or '\\' */
            uint64_t x = load64(s + i), q = x ^ (ONES * '"'), b = x ^ (ONES * '\\');
            uint64_t esc = ((x - ONES * 0x20) & ~x) | ((q - ONES) & ~q) | ((b - ONES) & ~b);
            if (!(esc & HIGH)) {
                memcpy(p, s + i, 8);
                p += 8;
                i += 7;
                continue;
            }
        }
        unsigned char c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *p++ = (char)c;
            continue;
        }
        *p++ = '\\';
        switch (c) {
        case '"': *p++ = '"'; break;
        case '\\': *p++ = '\\'; break;
        case '\b': *p++ = 'b'; break;
        case '\t': *p++ = 't'; break;
        case '\n': *p++ = 'n'; break;
        case '\f': *p++ = 'f'; break;
        case '\r': *p++ = 'r'; break;
        default:
            memcpy(p, "u00", 3);
            p[3] = HEX[c >> 4];
            p[4] = HEX[c & 15];
            p += 5;
        }
    }
    *p++ = '"';
    return p;
}

/* The lines being built, in the bytes object that is returned (no copy at the end). */
typedef struct {
    PyObject *obj;
    char *buf;
    size_t len, cap;
} out_t;

static int reserve(out_t *o, size_t more)
{
    if (o->len + more <= o->cap)
        return 0;
    size_t cap = o->cap ? o->cap : 1 << 16;
    while (cap < o->len + more)
        cap *= 2;
    if (o->obj == NULL)
        o->obj = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
    else if (_PyBytes_Resize(&o->obj, (Py_ssize_t)cap) < 0)
        o->obj = NULL;
    if (o->obj == NULL)
        return -1;
    o->buf = PyBytes_AS_STRING(o->obj);
    o->cap = cap;
    return 0;
}

static PyObject *s_time_ns, *s_source, *s_message, *s_event, *s_attrs, *s_raw_attrs;

/* The timestamp cache: one strftime per second, as encode_body's. */
static long long ts_sec = -1;
static char ts_text[32];
static size_t ts_len;

static PyObject *orjson_dumps;

/* Encode the body of f at o (the common case: a UTF-8 message; attrs as raw JSON, or a
 * dict orjson encodes; an event of valid text). 1: written; 0: not the common case (the
 * caller asks Python, whose encoder decides what the others become); -1: error. */
static int encode_common(out_t *o, PyObject *f, long long seq, long long epoch, long long t)
{
    PyObject *src = PyObject_GetAttr(f, s_source);
    PyObject *msg = PyObject_GetAttr(f, s_message);
    PyObject *ev = PyObject_GetAttr(f, s_event);
    PyObject *raw = PyObject_GetAttr(f, s_raw_attrs);
    PyObject *attrs = raw == Py_None ? PyObject_GetAttr(f, s_attrs) : NULL;
    PyObject *ajson = NULL;
    int rc = -1;
    if (src == NULL || msg == NULL || ev == NULL || raw == NULL ||
        (raw == Py_None && attrs == NULL))
        goto done;
    rc = 0;
    if ((ev != Py_None && !PyUnicode_CheckExact(ev)) || !PyUnicode_CheckExact(src) ||
        !PyBytes_CheckExact(msg) || (raw != Py_None && !PyBytes_CheckExact(raw)) ||
        (attrs != NULL && attrs != Py_None && !PyDict_CheckExact(attrs)))
        goto done;
    if (t < 0 || t / 1000000000LL >= 253402300800LL)  /* year 10000 */
        goto done;
    Py_ssize_t nsrc, nev = 0;
    const char *usrc = PyUnicode_AsUTF8AndSize(src, &nsrc);
    const char *uev = usrc != NULL && ev != Py_None ? PyUnicode_AsUTF8AndSize(ev, &nev) : "";
    if (usrc == NULL || uev == NULL) {  /* lone surrogates: Python's encoder decides */
        PyErr_Clear();
        goto done;
    }
    const unsigned char *m = (const unsigned char *)PyBytes_AS_STRING(msg);
    size_t nm = (size_t)PyBytes_GET_SIZE(msg);
    if (!valid_utf8(m, nm))
        goto done;
    if (attrs != NULL && attrs != Py_None && PyDict_GET_SIZE(attrs) > 0) {
        ajson = PyObject_CallOneArg(orjson_dumps, attrs);
        if (ajson == NULL || !PyBytes_Check(ajson)) {  /* not encodable: Python decides */
            PyErr_Clear();
            goto done;
        }
    }
    PyObject *extra = raw != Py_None ? raw : ajson;
    size_t nraw = extra != NULL ? (size_t)PyBytes_GET_SIZE(extra) : 0;
    rc = -1;
    if (reserve(o, 180 + 6 * (size_t)(nsrc + nev) + 6 * nm + nraw + SUFFIX) < 0)
        goto done;
    long long sec = t / 1000000000LL, frac = t % 1000000000LL;
    if (sec != ts_sec) {
        time_t tt = (time_t)sec;
        struct tm tm;
        if (gmtime_r(&tt, &tm) == NULL ||
            (ts_len = strftime(ts_text, sizeof ts_text, "%Y-%m-%dT%H:%M:%S", &tm)) == 0) {
            ts_sec = -1;
            rc = 0;
            goto done;
        }
        ts_sec = sec;
    }
    char *p = o->buf + o->len;
    memcpy(p, "{\"seq\":", 7);
    p += 7;
    p += put_int(p, seq);
    memcpy(p, ",\"epoch\":", 9);
    p += 9;
    p += put_int(p, epoch);
    memcpy(p, ",\"time\":", 8);
    p += 8;
    p += put_int(p, t);
    memcpy(p, ",\"ts\":\"", 7);
    p += 7;
    memcpy(p, ts_text, ts_len);
    p += ts_len;
    *p++ = '.';
    for (int i = 8; i >= 0; i--) {
        p[i] = (char)('0' + frac % 10);
        frac /= 10;
    }
    p += 9;
    memcpy(p, "Z\",\"source\":", 12);
    p += 12;
    p = json_str(p, (const unsigned char *)usrc, (size_t)nsrc);
    if (ev != Py_None) {
        memcpy(p, ",\"event\":", 9);
        p = json_str(p + 9, (const unsigned char *)uev, (size_t)nev);
    }
    memcpy(p, ",\"message\":", 11);
    p += 11;
    p = json_str(p, m, nm);
    if (extra != NULL) {
        memcpy(p, ",\"attrs\":", 9);
        p += 9;
        memcpy(p, PyBytes_AS_STRING(extra), nraw);
        p += nraw;
    }
    o->len = (size_t)(p - o->buf);
    rc = 1;
done:
    Py_XDECREF(src);
    Py_XDECREF(msg);
    Py_XDECREF(ev);
    Py_XDECREF(raw);
    Py_XDECREF(attrs);
    Py_XDECREF(ajson);
    return rc;
}

PyDoc_STRVAR(seal_fields_doc,
"seal_fields(batch, start, deadline, stop, seq, epoch, link, mac, key, stack, encode)\n"
"    -> (lines, next, link, mac)\n\n"
"Sealer.seal_many in one call: encode and seal batch[start:] (Fields) numbered from\n"
"seq in epoch, stopping before a record whose time_ns >= deadline or when seq\n"
"reaches stop (-1: never). A body that is not the common case (an event, attrs to\n"
"encode, a message that is not UTF-8, ...) comes from encode(seq, epoch, fields).\n"
"``stack`` is updated in place.");

static PyObject *seal_fields(PyObject *self, PyObject *args)
{
    PyObject *batch, *deadline_o, *link, *mac, *key, *stack, *encode;
    Py_ssize_t start;
    long long stop, seq, epoch;
    chain_t c;
    if (!PyArg_ParseTuple(args, "O!nOLLLOOOOO", &PyList_Type, &batch, &start, &deadline_o, &stop,
                          &seq, &epoch, &link, &mac, &key, &stack, &encode))
        return NULL;
    int dover = 0;
    long long deadline = PyLong_AsLongLongAndOverflow(deadline_o, &dover);
    if (deadline == -1 && PyErr_Occurred())
        return NULL;
    if (key == Py_None) {
        PyErr_SetString(PyExc_ValueError, "sealing needs the MAC key");
        return NULL;
    }
    if (load(&c, seq, link, mac, key, stack) < 0) {
        cleanse(&c);
        return NULL;
    }
    out_t o = {NULL, NULL, 0, 0};
    size_t *ends = NULL; /* per record: offset of the body's end (its suffix follows) */
    size_t nends = 0, capends = 0;
    Py_ssize_t n = PyList_GET_SIZE(batch), i = start < 0 ? 0 : start;
    long long s = seq;
    for (; i < n; i++) {
        PyObject *f = PyList_GET_ITEM(batch, i);
        PyObject *t_o = PyObject_GetAttr(f, s_time_ns);
        if (t_o == NULL)
            goto fail;
        int tover = 0;
        long long t = PyLong_Check(t_o) ? PyLong_AsLongLongAndOverflow(t_o, &tover) : 0;
        int due, plain = PyLong_Check(t_o) && !tover;
        if (!plain || dover)
            due = PyObject_RichCompareBool(t_o, deadline_o, Py_GE);
        else
            due = t >= deadline;
        Py_DECREF(t_o);
        if (due < 0)
            goto fail;
        if (due || s == stop)
            break;
        if (s >= (1LL << 62)) {
            PyErr_SetString(PyExc_OverflowError, "seq out of range");
            goto fail;
        }
        size_t before = o.len;
        int rc = plain ? encode_common(&o, f, s, epoch, t) : 0;
        if (rc < 0)
            goto fail;
        if (rc == 0) {
            PyObject *body = PyObject_CallFunction(encode, "LLO", s, epoch, f);
            if (body == NULL)
                goto fail;
            if (!PyBytes_Check(body)) {
                Py_DECREF(body);
                PyErr_SetString(PyExc_TypeError, "encode must return bytes");
                goto fail;
            }
            size_t nb = (size_t)PyBytes_GET_SIZE(body);
            if (reserve(&o, nb + SUFFIX) < 0) {
                Py_DECREF(body);
                goto fail;
            }
            memcpy(o.buf + before, PyBytes_AS_STRING(body), nb);
            o.len = before + nb;
            Py_DECREF(body);
        }
        if (nends == capends) {
            capends = capends ? 2 * capends : 1024;
            size_t *e = PyMem_Realloc(ends, capends * sizeof *ends);
            if (e == NULL) {
                PyErr_NoMemory();
                goto fail;
            }
            ends = e;
        }
        ends[nends++] = o.len;
        o.len += SUFFIX; /* reserved above: filled in below */
        s++;
    }
    /* the hashing, without the GIL: the buffer is ours alone */
    Py_BEGIN_ALLOW_THREADS
    size_t from = 0;
    for (size_t r = 0; r < nends; r++) {
        char *body = o.buf + from, *p = o.buf + ends[r];
        unsigned char leaf[D], link2[D], tag[D];
        step(&c, (const unsigned char *)body, (size_t)(p - body), leaf, link2);
        mac_of(&c, link2, tag);
        merkle_append(&c, leaf);
        c.seq++;
        memcpy(c.link, link2, D);
        memcpy(c.mac, tag, D);
        memcpy(p, LINK_OPEN, 9);
        hexify(p + 9, link2);
        memcpy(p + 73, MAC_OPEN, 9);
        hexify(p + 82, tag);
        memcpy(p + 146, "\"}\n", 3);
        from = ends[r] + SUFFIX;
    }
    Py_END_ALLOW_THREADS
    cleanse(&c);
    PyMem_Free(ends);
    PyObject *lines = o.obj;
    if (lines == NULL)
        lines = PyBytes_FromStringAndSize("", 0);
    else if (_PyBytes_Resize(&lines, (Py_ssize_t)o.len) < 0)
        lines = NULL;
    if (lines == NULL || store_stack(&c, stack) < 0) {
        Py_XDECREF(lines);
        return NULL;
    }
    return Py_BuildValue("(Nny#y#)", lines, i, (const char *)c.link, (Py_ssize_t)D,
                         (const char *)c.mac, (Py_ssize_t)D);
fail:
    cleanse(&c);
    PyMem_Free(ends);
    Py_XDECREF(o.obj);
    return NULL;
}

/* ------------------------------------------------------------ verify */

/* Whether the body raw[0:s] is a meta record by the byte test of FORMAT.md 15.4:
 * the first ,"source": in it is followed by "source":"auditd-py", */
static int is_meta(const char *raw, size_t s)
{
    if (s < 10)
        return 0;
    const char *hit = memmem(raw, s, SOURCE_KEY, 10);
    if (hit == NULL)
        return 0;
    size_t at = (size_t)(hit - raw) + 1;
    return s - at >= 21 && memcmp(raw + at, META_MARK, 21) == 0;
}

typedef struct {
    const char *p;
    size_t n;
} span_t;

/* One line on the fast path: 1 accepted (chain advanced), 0 not for the fast path. */
static int verify_one(chain_t *c, long long epoch, const char *raw, size_t len)
{
    char want[SUFFIX];
    char prefix[64];
    if (len <= SUFFIX)
        return 0;
    size_t s = len - SUFFIX;
    size_t np = 7;
    memcpy(prefix, "{\"seq\":", 7);
    np += (size_t)put_int(prefix + np, c->seq);
    memcpy(prefix + np, ",\"epoch\":", 9);
    np += 9;
    np += (size_t)put_int(prefix + np, epoch);
    prefix[np++] = ',';
    if (np > len || memcmp(raw, prefix, np) != 0)
        return 0;
    if (is_meta(raw, s))
        return 0;
    unsigned char leaf[D], link2[D], tag[D];
    step(c, (const unsigned char *)raw, s, leaf, link2);
    memcpy(want, LINK_OPEN, 9);
    hexify(want + 9, link2);
    memcpy(want + 73, MAC_OPEN, 9);
    if (c->keyed) {
        mac_of(c, link2, tag);
        hexify(want + 82, tag);
        memcpy(want + 146, "\"}\n", 3);
        /* link and framing are public; the MAC compares in constant time */
        if (memcmp(raw + s, want, 82) != 0 || !ct_equal(raw + s + 82, want + 82, 64) ||
            memcmp(raw + s + 146, want + 146, 3) != 0)
            return 0;
    } else {
        if (memcmp(raw + s, want, 82) != 0 || memcmp(raw + s + 146, "\"}\n", 3) != 0 ||
            !unhex_lower(tag, raw + s + 82))
            return 0;
    }
    merkle_append(c, leaf);
    c->seq++;
    memcpy(c->link, link2, D);
    memcpy(c->mac, tag, D);
    return 1;
}

PyDoc_STRVAR(verify_run_doc,
"verify_run(lines, start, seq, epoch, link, mac, key, stack, boundary)\n"
"    -> (next, seq, link, mac, nbytes)\n\n"
"Check lines[start:] (raw lines with their newline) as ordinary data records of\n"
"``epoch`` by the fast path of Verifier.records: position prefix, not a meta\n"
"record, the whole seal suffix equal to the one the sealer writes (``key`` None:\n"
"the link part, and a lower-case hex MAC). Stops at the first line that is not\n"
"accepted (``next`` is its index) or after the record that brings ``seq`` to\n"
"``boundary``. ``nbytes`` is the length of the accepted lines; ``stack`` is\n"
"updated in place.");

static PyObject *verify_run(PyObject *self, PyObject *args)
{
    PyObject *lines, *link, *mac, *key, *stack;
    Py_ssize_t start;
    long long seq, epoch, boundary;
    chain_t c;
    if (!PyArg_ParseTuple(args, "O!nLLOOOOL", &PyList_Type, &lines, &start, &seq, &epoch, &link,
                          &mac, &key, &stack, &boundary))
        return NULL;
    if (load(&c, seq, link, mac, key, stack) < 0) {
        cleanse(&c);
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(lines);
    if (start < 0)
        start = 0;
    if (start > n)
        start = n;
    Py_ssize_t count = n - start;
    span_t *spans = PyMem_Malloc((size_t)(count ? count : 1) * sizeof(span_t));
    if (spans == NULL) {
        cleanse(&c);
        return PyErr_NoMemory();
    }
    Py_ssize_t usable = count;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *b = PyList_GET_ITEM(lines, start + i);
        if (!PyBytes_Check(b)) {
            usable = i;  /* the pure path decides what a non-bytes line is */
            break;
        }
        spans[i].p = PyBytes_AS_STRING(b);
        spans[i].n = (size_t)PyBytes_GET_SIZE(b);
    }
    Py_ssize_t done = 0;
    long long nbytes = 0;
    /* seq stays below 2**62: the stack fits, and the prefix is what Python formats */
    long long cap = (1LL << 62);
    Py_BEGIN_ALLOW_THREADS
    while (done < usable && c.seq < cap) {
        if (!verify_one(&c, epoch, spans[done].p, spans[done].n))
            break;
        nbytes += (long long)spans[done].n;
        done++;
        if (c.seq == boundary)
            break;
    }
    Py_END_ALLOW_THREADS
    PyMem_Free(spans);
    cleanse(&c);
    if (store_stack(&c, stack) < 0)
        return NULL;
    return Py_BuildValue("(nLy#y#L)", start + done, c.seq, (const char *)c.link,
                         (Py_ssize_t)D, (const char *)c.mac, (Py_ssize_t)D, nbytes);
}

static PyMethodDef methods[] = {
    {"seal", seal, METH_VARARGS, seal_doc},
    {"seal_fields", seal_fields, METH_VARARGS, seal_fields_doc},
    {"verify_run", verify_run, METH_VARARGS, verify_run_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fast",
    "The compiled per-record loop of sealing and verifying (libsodium BLAKE2b).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fast(void)
{
    if (sodium_init() < 0) {
        PyErr_SetString(PyExc_ImportError, "libsodium failed to initialise");
        return NULL;
    }
    const unsigned char tags[3] = {0x00, 0x01, 0x02};
    crypto_generichash_init(&leaf0, NULL, 0, D);
    crypto_generichash_update(&leaf0, &tags[0], 1);
    crypto_generichash_init(&node0, NULL, 0, D);
    crypto_generichash_update(&node0, &tags[1], 1);
    crypto_generichash_init(&link0, NULL, 0, D);
    crypto_generichash_update(&link0, &tags[2], 1);
    if (!(s_time_ns = PyUnicode_InternFromString("time_ns")) ||
        !(s_source = PyUnicode_InternFromString("source")) ||
        !(s_message = PyUnicode_InternFromString("message")) ||
        !(s_event = PyUnicode_InternFromString("event")) ||
        !(s_attrs = PyUnicode_InternFromString("attrs")) ||
        !(s_raw_attrs = PyUnicode_InternFromString("raw_attrs")))
        return NULL;
    PyObject *orjson = PyImport_ImportModule("orjson");
    if (orjson == NULL)
        return NULL;
    orjson_dumps = PyObject_GetAttrString(orjson, "dumps");
    Py_DECREF(orjson);
    if (orjson_dumps == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddStringConstant(m, "sodium_version", sodium_version_string()) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
