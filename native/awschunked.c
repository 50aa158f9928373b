/* aws-chunked decoding in C: the state machine of awschunked.h and the Python type
 * aif_gateway._native.ChunkedDecoder around it. The pure-Python version is
 * aif_gateway/fsio/pychunked.py; tests/unit/native/test_awschunked.py compares the two.
 *
 * The state machine reads a line at a time (chunk headers, trailers) into its own buffer and
 * passes chunk data through, so input may be split at any byte. Checks happen in the order of
 * aif_gateway/s3/chunked.py and fail with its messages, so both decoders answer alike.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "awschunked.h"

/* Below this many bytes decoding takes less time than releasing and retaking the GIL. */
#define CHUNKED_GIL_RELEASE_MIN 4096

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define TRAILER_SIGNATURE "x-amz-trailer-signature"
#define CHUNK_SIGNATURE "chunk-signature="

enum { PHASE_HEADER, PHASE_DATA, PHASE_DATA_END, PHASE_TRAILER, PHASE_END, PHASE_ERROR };

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                      */

static int fail(ChunkedState *s, ChunkedErrorKind kind, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(ChunkedState *s, ChunkedErrorKind kind, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(s->message, sizeof(s->message), format, args);
    va_end(args);
    s->error = kind;
    s->phase = PHASE_ERROR;
    return -1;
}

#define FRAMING_PREFIX "Malformed aws-chunked body: "

/* Python's repr() of a bytes object, so messages match the Python version's f"{data!r}". out holds at
 * least 4 * n + 4 bytes. */
static void bytes_repr(char *out, const uint8_t *p, size_t n)
{
    char quote = '\'';
    if (memchr(p, '\'', n) != NULL && memchr(p, '"', n) == NULL)
        quote = '"';
    char *o = out;
    *o++ = 'b';
    *o++ = quote;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (c == (uint8_t)quote || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c == '\t') {
            *o++ = '\\';
            *o++ = 't';
        } else if (c == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else if (c == '\r') {
            *o++ = '\\';
            *o++ = 'r';
        } else if (c < ' ' || c >= 0x7f) {
            o += sprintf(o, "\\x%02x", c);
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = quote;
    *o = '\0';
}

const char *chunked_kind_name(ChunkedErrorKind kind)
{
    switch (kind) {
    case CHUNKED_OK: return "ok";
    case CHUNKED_FRAMING: return "framing";
    case CHUNKED_INCOMPLETE: return "incomplete";
    case CHUNKED_SIGNATURE: return "signature";
    case CHUNKED_TRAILER: return "trailer";
    case CHUNKED_ARGUMENT: return "argument";
    case CHUNKED_INTERNAL: return "internal";
    }
    return "internal";
}

/* ------------------------------------------------------------------------------------------ */
/* Signatures                                                                                  */

static void to_hex(char *out, const uint8_t *digest, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[digest[i] >> 4];
        out[2 * i + 1] = digits[digest[i] & 15];
    }
}

/* Hex HMAC-SHA256 with the signing key of "<kind>\n<date>\n<scope>\n<previous>\n<digest_lines>":
 * the keyed inner and outer contexts are copied, so no key schedule runs per chunk. */
static int sign(ChunkedState *s, const char *kind, const char *digest_lines, size_t digest_len, char out[64])
{
    uint8_t inner[32], outer[32];
    unsigned len;
    int ok = EVP_MD_CTX_copy_ex(s->work, s->inner) && EVP_DigestUpdate(s->work, kind, strlen(kind)) &&
             EVP_DigestUpdate(s->work, "\n", 1) && EVP_DigestUpdate(s->work, s->date_scope, s->date_scope_len) &&
             EVP_DigestUpdate(s->work, s->previous_signature, 64) && EVP_DigestUpdate(s->work, "\n", 1) &&
             EVP_DigestUpdate(s->work, digest_lines, digest_len) && EVP_DigestFinal_ex(s->work, inner, &len) &&
             EVP_MD_CTX_copy_ex(s->work, s->outer) && EVP_DigestUpdate(s->work, inner, 32) &&
             EVP_DigestFinal_ex(s->work, outer, &len);
    if (!ok)
        return fail(s, CHUNKED_INTERNAL, "OpenSSL digest failed");
    to_hex(out, outer, 32);
    return 0;
}

/* Check the current chunk's signature against the SHA-256 of its data (hex). */
static int verify_chunk(ChunkedState *s, const char data_sha256[64])
{
    char lines[64 + 1 + 64], expected[64];
    memcpy(lines, EMPTY_SHA256, 64);
    lines[64] = '\n';
    memcpy(lines + 65, data_sha256, 64);
    if (sign(s, "AWS4-HMAC-SHA256-PAYLOAD", lines, sizeof(lines), expected) < 0)
        return -1;
    if (CRYPTO_memcmp(expected, s->chunk_signature, 64) != 0)
        return fail(s, CHUNKED_SIGNATURE, "The chunk signature does not match the chunk's data.");
    memcpy(s->previous_signature, expected, 64);
    return 0;
}

static int finish_chunk_hash(ChunkedState *s, char hex[64])
{
    uint8_t digest[32];
    unsigned len;
    if (!EVP_DigestFinal_ex(s->chunk, digest, &len))
        return fail(s, CHUNKED_INTERNAL, "OpenSSL digest failed");
    to_hex(hex, digest, 32);
    return 0;
}

static int verify_trailer_signature(ChunkedState *s)
{
    uint8_t digest[32];
    unsigned len;
    char hex[64], expected[64];
    if (!EVP_MD_CTX_copy_ex(s->work, s->fresh) || !EVP_DigestUpdate(s->work, s->canonical, s->canonical_len) ||
        !EVP_DigestFinal_ex(s->work, digest, &len))
        return fail(s, CHUNKED_INTERNAL, "OpenSSL digest failed");
    to_hex(hex, digest, 32);
    if (sign(s, "AWS4-HMAC-SHA256-TRAILER", hex, 64, expected) < 0)
        return -1;
    /* Only a 64-byte value is kept; any other length cannot match, checked without a branch on
     * the bytes themselves. */
    int differs = CRYPTO_memcmp(expected, s->trailer_signature, 64) != 0;
    if (differs || s->trailer_signature_len != 64)
        return fail(s, CHUNKED_SIGNATURE, "The trailer signature does not match the trailers.");
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Lines                                                                                       */

static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int on_chunk_header(ChunkedState *s, const uint8_t *line, size_t len)
{
    const uint8_t *semi = memchr(line, ';', len);
    size_t size_len = semi ? (size_t)(semi - line) : len;
    uint64_t size = 0;
    int good = size_len >= 1 && size_len <= 16;
    for (size_t i = 0; good && i < size_len; i++) {
        int v = hex_value(line[i]);
        good = v >= 0;
        size = (size << 4) | (uint64_t)(v & 15);
    }
    if (!good) {
        char repr[4 * 32 + 4];
        bytes_repr(repr, line, size_len < 32 ? size_len : 32);
        return fail(s, CHUNKED_FRAMING, FRAMING_PREFIX "bad chunk size %s", repr);
    }
    if (!s->signed_mode) {
        if (semi)
            return fail(s, CHUNKED_FRAMING,
                        FRAMING_PREFIX "chunk extensions are not expected in unsigned streaming mode");
    } else {
        const uint8_t *ext = semi ? semi + 1 : line + len;
        size_t ext_len = (size_t)(line + len - ext), prefix = sizeof(CHUNK_SIGNATURE) - 1;
        good = ext_len == prefix + 64 && memcmp(ext, CHUNK_SIGNATURE, prefix) == 0;
        for (size_t i = 0; good && i < 64; i++) {
            uint8_t c = ext[prefix + i];
            good = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        }
        if (!good)
            return fail(s, CHUNKED_FRAMING, FRAMING_PREFIX "each chunk must carry chunk-signature=<64 hex digits>");
        memcpy(s->chunk_signature, ext + prefix, 64);
    }
    if (size == 0) {
        if (s->signed_mode && verify_chunk(s, EMPTY_SHA256) < 0)
            return -1;
        s->phase = PHASE_TRAILER;
        return 0;
    }
    /* received counts whole chunks here: the previous chunk ended before this header. */
    if (s->decoded_length >= 0 && size > (uint64_t)s->decoded_length - s->received)
        return fail(s, CHUNKED_INCOMPLETE, "The aws-chunked body is longer than x-amz-decoded-content-length.");
    if (s->signed_mode && !EVP_MD_CTX_copy_ex(s->chunk, s->fresh))
        return fail(s, CHUNKED_INTERNAL, "OpenSSL digest failed");
    s->chunk_left = size;
    s->phase = PHASE_DATA;
    return 0;
}

/* Python's str.isspace() over latin-1, which is how the Python version decodes trailer lines. */
static int latin1_space(uint8_t c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0;
}

static void strip(const uint8_t **p, size_t *n)
{
    while (*n && latin1_space(**p)) {
        (*p)++;
        (*n)--;
    }
    while (*n && latin1_space((*p)[*n - 1]))
        (*n)--;
}

static int trailer_received(const ChunkedState *s, const char *name, size_t len)
{
    for (int i = 0; i < s->n_trailers; i++)
        if (s->trailers[i].name_len == len && memcmp(s->canonical + s->trailers[i].name_at, name, len) == 0)
            return 1;
    return 0;
}

static int end_of_trailers(ChunkedState *s)
{
    char missing[CHUNKED_MAX_TRAILERS * (CHUNKED_MAX_TRAILER_NAME + 2) + 1];
    size_t m = 0;
    for (int i = 0; i < s->n_names; i++) {
        size_t len = strlen(s->names[i]);
        if (trailer_received(s, s->names[i], len))
            continue;
        if (m) {
            memcpy(missing + m, ", ", 2);
            m += 2;
        }
        memcpy(missing + m, s->names[i], len);
        m += len;
    }
    missing[m] = '\0';
    if (m)
        return fail(s, CHUNKED_TRAILER, "The trailer(s) %s declared in x-amz-trailer were not sent.", missing);
    if (s->signed_mode && s->with_trailers) {
        if (!s->have_trailer_signature)
            return fail(s, CHUNKED_TRAILER, "The signed trailer is missing x-amz-trailer-signature.");
        if (verify_trailer_signature(s) < 0)
            return -1;
    }
    if (s->decoded_length >= 0 && s->received != (uint64_t)s->decoded_length)
        return fail(s, CHUNKED_INCOMPLETE,
                    "The aws-chunked body holds %llu bytes; x-amz-decoded-content-length says %lld.",
                    (unsigned long long)s->received, s->decoded_length);
    s->phase = PHASE_END;
    return 0;
}

static int on_trailer_line(ChunkedState *s, const uint8_t *line, size_t len)
{
    if (len == 0)
        return end_of_trailers(s);
    if (!s->with_trailers)
        return fail(s, CHUNKED_FRAMING, FRAMING_PREFIX "trailers are not allowed in this streaming mode");
    const uint8_t *colon = memchr(line, ':', len);
    const uint8_t *raw_name = line;
    size_t name_len = colon ? (size_t)(colon - line) : len;
    strip(&raw_name, &name_len);
    char name[CHUNKED_MAX_LINE + 1];
    int good = colon != NULL && name_len >= 1;
    for (size_t i = 0; good && i < name_len; i++) {
        uint8_t c = raw_name[i];
        if (c >= 'A' && c <= 'Z')
            c = (uint8_t)(c - 'A' + 'a');
        good = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
        name[i] = (char)c;
    }
    if (!good) {
        char repr[4 * 64 + 4];
        bytes_repr(repr, line, len < 64 ? len : 64);
        return fail(s, CHUNKED_FRAMING, FRAMING_PREFIX "bad trailer line %s", repr);
    }
    name[name_len] = '\0';
    const uint8_t *value = colon + 1;
    size_t value_len = (size_t)(line + len - value);
    strip(&value, &value_len);

    if (s->signed_mode && strcmp(name, TRAILER_SIGNATURE) == 0) {
        if (s->have_trailer_signature)
            return fail(s, CHUNKED_FRAMING, FRAMING_PREFIX "x-amz-trailer-signature sent twice");
        s->have_trailer_signature = 1;
        s->trailer_signature_len = value_len;
        if (value_len == 64)
            memcpy(s->trailer_signature, value, 64);
        return 0;
    }
    int declared = 0;
    for (int i = 0; i < s->n_names && !declared; i++)
        declared = strcmp(s->names[i], name) == 0;
    if (!declared)
        return fail(s, CHUNKED_TRAILER, "The trailer %s was not declared in x-amz-trailer.", name);
    if (trailer_received(s, name, name_len))
        return fail(s, CHUNKED_FRAMING, FRAMING_PREFIX "trailer %s sent twice", name);
    /* Each declared name arrives once and is at most CHUNKED_MAX_TRAILER_NAME bytes, so there
     * is room; the check guards the arithmetic, not a reachable case. */
    size_t need = name_len + 1 + value_len + 1;
    if (s->n_trailers >= CHUNKED_MAX_TRAILERS || s->canonical_len + need > sizeof(s->canonical))
        return fail(s, CHUNKED_FRAMING, FRAMING_PREFIX "line too long");
    char *c = s->canonical + s->canonical_len;
    s->trailers[s->n_trailers].name_at = s->canonical_len;
    s->trailers[s->n_trailers].name_len = name_len;
    s->trailers[s->n_trailers].value_at = s->canonical_len + name_len + 1;
    s->trailers[s->n_trailers].value_len = value_len;
    s->n_trailers++;
    memcpy(c, name, name_len);
    c[name_len] = ':';
    memcpy(c + name_len + 1, value, value_len);
    c[name_len + 1 + value_len] = '\n';
    s->canonical_len += need;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The state machine                                                                           */

int chunked_init(ChunkedState *s, int signed_mode, int with_trailers, const uint8_t *signing_key,
                 const char *amz_date, const char *scope, const char *seed_signature_hex,
                 long long decoded_length, const char *const *trailer_names, int n_trailer_names)
{
    memset(s, 0, offsetof(ChunkedState, canonical));
    s->canonical_len = 0;
    s->have_trailer_signature = 0;
    s->trailer_signature_len = 0;
    s->error = CHUNKED_OK;
    s->message[0] = '\0';
    s->signed_mode = signed_mode != 0;
    s->with_trailers = with_trailers != 0;
    s->decoded_length = decoded_length < 0 ? -1 : decoded_length;
    s->phase = PHASE_HEADER;
    if (n_trailer_names > 0 && !s->with_trailers)
        return fail(s, CHUNKED_TRAILER, "x-amz-trailer is not allowed in a streaming mode without trailers.");
    if (n_trailer_names < 0 || n_trailer_names > CHUNKED_MAX_TRAILERS)
        return fail(s, CHUNKED_TRAILER, "x-amz-trailer may name at most %d trailers.", CHUNKED_MAX_TRAILERS);
    for (int i = 0; i < n_trailer_names; i++) {
        size_t len = strlen(trailer_names[i]);
        if (len > CHUNKED_MAX_TRAILER_NAME)
            return fail(s, CHUNKED_TRAILER, "x-amz-trailer names a trailer longer than %d bytes.",
                        CHUNKED_MAX_TRAILER_NAME);
        memcpy(s->names[i], trailer_names[i], len + 1);
    }
    s->n_names = n_trailer_names;
    if (!s->signed_mode)
        return 0;

    if (signing_key == NULL || amz_date == NULL || scope == NULL || seed_signature_hex == NULL ||
        strlen(seed_signature_hex) != 64)
        return fail(s, CHUNKED_ARGUMENT,
                    "signed modes need a signing key, amz_date, scope and a 64-digit seed signature");
    int n = snprintf(s->date_scope, sizeof(s->date_scope), "%s\n%s\n", amz_date, scope);
    if (n < 0 || (size_t)n >= sizeof(s->date_scope))
        return fail(s, CHUNKED_ARGUMENT, "amz_date and scope are too long");
    s->date_scope_len = (size_t)n;
    memcpy(s->previous_signature, seed_signature_hex, 64);

    EVP_MD_CTX **contexts[] = {&s->fresh, &s->chunk, &s->inner, &s->outer, &s->work};
    for (size_t i = 0; i < sizeof(contexts) / sizeof(contexts[0]); i++)
        if ((*contexts[i] = EVP_MD_CTX_new()) == NULL)
            return fail(s, CHUNKED_INTERNAL, "OpenSSL could not allocate a digest context");
    /* HMAC with a 32-byte key: SHA-256 over (key ^ ipad) || message, then over (key ^ opad) ||
     * that digest; both pads are fed once here. */
    uint8_t ipad[64], opad[64];
    for (int i = 0; i < 64; i++) {
        uint8_t k = i < 32 ? signing_key[i] : 0;
        ipad[i] = k ^ 0x36;
        opad[i] = k ^ 0x5c;
    }
    if (!EVP_DigestInit_ex(s->fresh, EVP_sha256(), NULL) || !EVP_MD_CTX_copy_ex(s->inner, s->fresh) ||
        !EVP_DigestUpdate(s->inner, ipad, 64) || !EVP_MD_CTX_copy_ex(s->outer, s->fresh) ||
        !EVP_DigestUpdate(s->outer, opad, 64))
        return fail(s, CHUNKED_INTERNAL, "OpenSSL cannot provide SHA-256");
    return 0;
}

void chunked_release(ChunkedState *s)
{
    EVP_MD_CTX **contexts[] = {&s->fresh, &s->chunk, &s->inner, &s->outer, &s->work};
    for (size_t i = 0; i < sizeof(contexts) / sizeof(contexts[0]); i++) {
        EVP_MD_CTX_free(*contexts[i]);
        *contexts[i] = NULL;
    }
}

/* A line ended (LF seen) in the line buffer: it must end in CR, then goes to its parser. */
static int on_line(ChunkedState *s)
{
    size_t len = s->line_len;
    s->line_len = 0;
    if (len == 0 || s->line[len - 1] != '\r')
        return fail(s, CHUNKED_FRAMING, FRAMING_PREFIX "line not terminated by CRLF");
    return s->phase == PHASE_HEADER ? on_chunk_header(s, s->line, len - 1) : on_trailer_line(s, s->line, len - 1);
}

ssize_t chunked_feed(ChunkedState *s, uint8_t *buf, size_t n)
{
    size_t i = 0, out = 0;
    while (i < n) {
        switch (s->phase) {
        case PHASE_HEADER:
        case PHASE_TRAILER: {
            const uint8_t *lf = memchr(buf + i, '\n', n - i);
            size_t take = lf ? (size_t)(lf - (buf + i)) : n - i;
            /* The line so far holds its CR too, hence the one extra byte. */
            if (s->line_len + take > CHUNKED_MAX_LINE + 1) {
                fail(s, CHUNKED_FRAMING, FRAMING_PREFIX "line too long");
                return -1;
            }
            memcpy(s->line + s->line_len, buf + i, take);
            s->line_len += take;
            i += take;
            if (lf) {
                i++;
                if (on_line(s) < 0)
                    return -1;
            }
            break;
        }
        case PHASE_DATA: {
            size_t take = n - i < s->chunk_left ? n - i : (size_t)s->chunk_left;
            if (out != i)
                memmove(buf + out, buf + i, take);
            if (s->signed_mode && !EVP_DigestUpdate(s->chunk, buf + out, take)) {
                fail(s, CHUNKED_INTERNAL, "OpenSSL digest failed");
                return -1;
            }
            out += take;
            i += take;
            s->chunk_left -= take;
            s->received += take;
            if (s->chunk_left == 0) {
                s->phase = PHASE_DATA_END;
                s->crlf_len = 0;
            }
            break;
        }
        case PHASE_DATA_END:
            s->crlf[s->crlf_len++] = buf[i++];
            if (s->crlf_len < 2)
                break;
            if (s->crlf[0] != '\r' || s->crlf[1] != '\n') {
                fail(s, CHUNKED_FRAMING, FRAMING_PREFIX "chunk data is not followed by CRLF");
                return -1;
            }
            if (s->signed_mode) {
                char hex[64];
                if (finish_chunk_hash(s, hex) < 0 || verify_chunk(s, hex) < 0)
                    return -1;
            }
            s->phase = PHASE_HEADER;
            break;
        case PHASE_END:
            fail(s, CHUNKED_FRAMING, FRAMING_PREFIX "data after the end of the body");
            return -1;
        default: /* PHASE_ERROR */
            return -1;
        }
    }
    return s->phase == PHASE_ERROR ? -1 : (ssize_t)out;
}

int chunked_finish(ChunkedState *s)
{
    switch (s->phase) {
    case PHASE_END:
        return 0;
    case PHASE_HEADER:
        if (s->line_len == 0)
            return fail(s, CHUNKED_INCOMPLETE, "The aws-chunked body ended before its final chunk.");
        return fail(s, CHUNKED_INCOMPLETE, "The aws-chunked body ended in the middle of a line.");
    case PHASE_DATA:
    case PHASE_DATA_END:
        return fail(s, CHUNKED_INCOMPLETE, "The aws-chunked body ended in the middle of a chunk.");
    case PHASE_TRAILER:
        /* The end of the input stands for the closing empty line, which some clients omit. */
        if (s->line_len == 0)
            return end_of_trailers(s);
        return fail(s, CHUNKED_INCOMPLETE, "The aws-chunked body ended in the middle of a line.");
    default:
        return -1;
    }
}

int chunked_done(const ChunkedState *s) { return s->phase == PHASE_END; }

/* ------------------------------------------------------------------------------------------ */
/* The Python type                                                                             */

typedef struct {
    PyObject_HEAD
    /* Held by whoever touches the state, with or without the GIL. */
    PyThread_type_lock lock;
    ChunkedState state;
} ChunkedDecoderObject;

static PyTypeObject ChunkedDecoderType;
static PyObject *ChunkedError;

void chunked_lock(PyObject *decoder)
{
    ChunkedDecoderObject *self = (ChunkedDecoderObject *)decoder;
    if (!PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(self->lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
}

void chunked_unlock(PyObject *decoder) { PyThread_release_lock(((ChunkedDecoderObject *)decoder)->lock); }

ChunkedState *chunked_state_of(PyObject *decoder)
{
    if (!PyObject_TypeCheck(decoder, &ChunkedDecoderType)) {
        PyErr_Format(PyExc_TypeError, "expected a ChunkedDecoder, not %.100s", Py_TYPE(decoder)->tp_name);
        return NULL;
    }
    return &((ChunkedDecoderObject *)decoder)->state;
}

PyObject *chunked_raise(const ChunkedState *s)
{
    PyObject *message = PyUnicode_DecodeUTF8(s->message, (Py_ssize_t)strlen(s->message), "replace");
    if (message == NULL)
        return NULL;
    if (s->error == CHUNKED_ARGUMENT || s->error == CHUNKED_INTERNAL || s->error == CHUNKED_OK) {
        PyErr_SetObject(s->error == CHUNKED_ARGUMENT ? PyExc_ValueError : PyExc_RuntimeError, message);
        Py_DECREF(message);
        return NULL;
    }
    PyObject *exc = PyObject_CallOneArg(ChunkedError, message);
    PyObject *kind = PyUnicode_FromString(chunked_kind_name(s->error));
    if (exc != NULL && kind != NULL && PyObject_SetAttrString(exc, "kind", kind) == 0 &&
        PyObject_SetAttrString(exc, "message", message) == 0)
        PyErr_SetObject(ChunkedError, exc);
    Py_XDECREF(kind);
    Py_XDECREF(exc);
    Py_DECREF(message);
    return NULL;
}

/* The declared trailer names, lower-cased as str.lower() does, as a new list of str. */
static PyObject *lowered_names(PyObject *names)
{
    PyObject *out = PyList_New(0), *it = PyObject_GetIter(names), *item;
    if (out == NULL || it == NULL) {
        Py_XDECREF(out);
        Py_XDECREF(it);
        return NULL;
    }
    while ((item = PyIter_Next(it)) != NULL) {
        PyObject *lower = PyUnicode_Check(item) ? PyObject_CallMethod(item, "lower", NULL) : NULL;
        if (lower == NULL && !PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "trailer names must be str, not %.100s", Py_TYPE(item)->tp_name);
        Py_DECREF(item);
        if (lower == NULL || PyList_Append(out, lower) < 0) {
            Py_XDECREF(lower);
            Py_DECREF(it);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(lower);
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

static PyObject *decoder_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"signed", "with_trailers", "signing_key", "amz_date", "scope", "seed_signature",
                             "decoded_length", "trailer_names", NULL};
    int signed_mode, with_trailers;
    Py_buffer key;
    const char *amz_date, *scope, *seed;
    PyObject *length_obj, *names_obj;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "ppy*sssOO:ChunkedDecoder", kwlist, &signed_mode, &with_trailers,
                                     &key, &amz_date, &scope, &seed, &length_obj, &names_obj))
        return NULL;
    long long decoded_length = -1;
    PyObject *names = NULL;
    const char **name_ptrs = NULL;
    ChunkedDecoderObject *self = NULL;
    if (length_obj != Py_None) {
        decoded_length = PyLong_AsLongLong(length_obj);
        if (decoded_length == -1 && PyErr_Occurred())
            goto done;
        if (decoded_length < 0) {
            PyErr_SetString(PyExc_ValueError, "decoded_length must be None or >= 0");
            goto done;
        }
    }
    if (signed_mode && key.len != 32) {
        PyErr_SetString(PyExc_ValueError, "signing_key must be 32 bytes in signed modes");
        goto done;
    }
    if ((names = lowered_names(names_obj)) == NULL)
        goto done;
    Py_ssize_t n_names = PyList_GET_SIZE(names);
    name_ptrs = PyMem_Calloc((size_t)n_names + 1, sizeof(char *));
    if (name_ptrs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n_names; i++)
        if ((name_ptrs[i] = PyUnicode_AsUTF8(PyList_GET_ITEM(names, i))) == NULL)
            goto done;
    self = (ChunkedDecoderObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        goto done;
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
        Py_CLEAR(self);
        PyErr_NoMemory();
        goto done;
    }
    if (chunked_init(&self->state, signed_mode, with_trailers, key.buf, amz_date, scope, seed, decoded_length,
                     name_ptrs, n_names > INT32_MAX ? INT32_MAX : (int)n_names) < 0) {
        chunked_raise(&self->state);
        Py_CLEAR(self);
    }
done:
    PyBuffer_Release(&key);
    PyMem_Free(name_ptrs);
    Py_XDECREF(names);
    return (PyObject *)self;
}

static void decoder_dealloc(ChunkedDecoderObject *self)
{
    chunked_release(&self->state);
    if (self->lock != NULL)
        PyThread_free_lock(self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *decoder_decode(ChunkedDecoderObject *self, PyObject *arg)
{
    Py_buffer view;
    if (!PyArg_Parse(arg, "w*:decode", &view))
        return NULL;
    ssize_t got;
    chunked_lock((PyObject *)self);
    if (view.len >= CHUNKED_GIL_RELEASE_MIN) {
        Py_BEGIN_ALLOW_THREADS
        got = chunked_feed(&self->state, view.buf, (size_t)view.len);
        Py_END_ALLOW_THREADS
    } else {
        got = chunked_feed(&self->state, view.buf, (size_t)view.len);
    }
    chunked_unlock((PyObject *)self);
    PyBuffer_Release(&view);
    if (got < 0)
        return chunked_raise(&self->state);
    return PyLong_FromSsize_t(got);
}

static PyObject *decoder_finish(ChunkedDecoderObject *self, PyObject *Py_UNUSED(ignored))
{
    chunked_lock((PyObject *)self);
    int rc = chunked_finish(&self->state);
    chunked_unlock((PyObject *)self);
    if (rc < 0)
        return chunked_raise(&self->state);
    Py_RETURN_NONE;
}

static PyObject *decoder_done(ChunkedDecoderObject *self, void *Py_UNUSED(closure))
{
    chunked_lock((PyObject *)self);
    int done = chunked_done(&self->state);
    chunked_unlock((PyObject *)self);
    return PyBool_FromLong(done);
}

static PyObject *decoder_received(ChunkedDecoderObject *self, void *Py_UNUSED(closure))
{
    chunked_lock((PyObject *)self);
    uint64_t received = self->state.received;
    chunked_unlock((PyObject *)self);
    return PyLong_FromUnsignedLongLong(received);
}

static PyObject *decoder_trailers(ChunkedDecoderObject *self, void *Py_UNUSED(closure))
{
    PyObject *out = PyDict_New();
    if (out == NULL)
        return NULL;
    chunked_lock((PyObject *)self);
    const ChunkedState *s = &self->state;
    int ok = 1;
    for (int i = 0; ok && i < s->n_trailers; i++) {
        PyObject *name = PyUnicode_DecodeLatin1(s->canonical + s->trailers[i].name_at,
                                                (Py_ssize_t)s->trailers[i].name_len, NULL);
        PyObject *value = PyUnicode_DecodeLatin1(s->canonical + s->trailers[i].value_at,
                                                 (Py_ssize_t)s->trailers[i].value_len, NULL);
        ok = name != NULL && value != NULL && PyDict_SetItem(out, name, value) == 0;
        Py_XDECREF(name);
        Py_XDECREF(value);
    }
    chunked_unlock((PyObject *)self);
    if (!ok)
        Py_CLEAR(out);
    return out;
}

static PyMethodDef decoder_methods[] = {
    {"decode", (PyCFunction)decoder_decode, METH_O,
     "decode(buffer) -> int: decode a writable buffer in place; its first n bytes are then data."},
    {"finish", (PyCFunction)decoder_finish, METH_NOARGS, "finish(): the body ended; raise unless it is complete."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef decoder_getset[] = {
    {"done", (getter)decoder_done, NULL, "The whole body arrived and every check passed.", NULL},
    {"received", (getter)decoder_received, NULL, "Data bytes decoded so far.", NULL},
    {"trailers", (getter)decoder_trailers, NULL, "Trailers so far: lower-case name -> value.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ChunkedDecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "aif_gateway._native.ChunkedDecoder",
    .tp_doc = "ChunkedDecoder(signed, with_trailers, signing_key, amz_date, scope, seed_signature, "
              "decoded_length, trailer_names): an incremental, in-place aws-chunked decoder.",
    .tp_basicsize = sizeof(ChunkedDecoderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = decoder_new,
    .tp_dealloc = (destructor)decoder_dealloc,
    .tp_methods = decoder_methods,
    .tp_getset = decoder_getset,
};

int aifnative_add_chunked(PyObject *module)
{
    if (PyType_Ready(&ChunkedDecoderType) < 0)
        return -1;
    if (ChunkedError == NULL) {
        ChunkedError = PyErr_NewExceptionWithDoc(
            "aif_gateway._native.ChunkedError",
            "A refused aws-chunked body: .kind is framing, incomplete, signature or trailer; .message the S3 message.",
            PyExc_ValueError, NULL);
        if (ChunkedError == NULL)
            return -1;
    }
    if (PyModule_AddObjectRef(module, "ChunkedDecoder", (PyObject *)&ChunkedDecoderType) < 0 ||
        PyModule_AddObjectRef(module, "ChunkedError", ChunkedError) < 0)
        return -1;
    return 0;
}
