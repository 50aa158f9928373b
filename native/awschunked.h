/* aws-chunked request bodies (Content-Encoding: aws-chunked), decoded in place, in C.
 *
 * The framing of the three streaming modes of x-amz-content-sha256:
 *
 *     hex-size[;chunk-signature=sig]\r\n <data> \r\n ... 0[;chunk-signature=sig]\r\n
 *     [name:value\r\n ...] [x-amz-trailer-signature:sig\r\n] \r\n
 *
 * A ChunkedState is fed the body in buffers split anywhere; chunked_feed moves the data bytes of
 * each buffer to its front and returns how many there are. Signed modes check every chunk
 * signature (chained from the request's seed signature) and the trailer signature. Nothing here
 * calls Python: chunked_init, chunked_feed and chunked_finish run without the GIL.
 *
 * Security: data is released before the signature of its chunk is checked (the signature of a
 * chunk can only be checked at its end, and a chunk may be larger than any buffer). A caller
 * writes released data to a temporary file and publishes it only once chunked_done() is true and
 * no call failed: done means every signature, the framing, the trailers and the length held.
 *
 * The pure-Python version is aif_gateway/fsio/pychunked.py; both give the same bytes, the same
 * error kinds and the same messages (those of aif_gateway/s3/chunked.py).
 *
 * Include after <Python.h>.
 */
#ifndef AIF_AWSCHUNKED_H
#define AIF_AWSCHUNKED_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/evp.h>

/* A chunk header or trailer line longer than this (without its CRLF) is a framing error. */
#define CHUNKED_MAX_LINE 4096
/* x-amz-trailer: at most this many names, each at most this many bytes (UTF-8). */
#define CHUNKED_MAX_TRAILERS 8
#define CHUNKED_MAX_TRAILER_NAME 64
#define CHUNKED_MAX_DATE_SCOPE 256
#define CHUNKED_MESSAGE_SIZE 1024

/* What went wrong; the S3 error each maps to is in brackets. */
typedef enum {
    CHUNKED_OK = 0,
    CHUNKED_FRAMING,    /* [InvalidRequest] "Malformed aws-chunked body: ..." */
    CHUNKED_INCOMPLETE, /* [IncompleteBody] */
    CHUNKED_SIGNATURE,  /* [SignatureDoesNotMatch] */
    CHUNKED_TRAILER,    /* [InvalidRequest] trailers missing, undeclared or not allowed */
    CHUNKED_ARGUMENT,   /* chunked_init was called wrongly (a programming error) */
    CHUNKED_INTERNAL,   /* OpenSSL failed (allocation) */
} ChunkedErrorKind;

typedef struct {
    /* configuration */
    int signed_mode, with_trailers;
    long long decoded_length; /* -1: unknown */
    char date_scope[CHUNKED_MAX_DATE_SCOPE]; /* "<amz_date>\n<scope>\n" */
    size_t date_scope_len;
    int n_names;
    char names[CHUNKED_MAX_TRAILERS][CHUNKED_MAX_TRAILER_NAME + 1]; /* declared, lower-case */
    /* SHA-256 contexts (signed modes only): a fresh one to copy, the current chunk's, the
     * HMAC inner and outer contexts keyed once, and scratch. */
    EVP_MD_CTX *fresh, *chunk, *inner, *outer, *work;

    /* progress */
    int phase;
    uint64_t received;   /* data bytes released so far */
    uint64_t chunk_left; /* data bytes of the current chunk still to come */
    char previous_signature[64];
    char chunk_signature[64]; /* the current chunk's, as sent */
    uint8_t crlf[2];          /* the two bytes after a chunk's data */
    int crlf_len;
    size_t line_len;
    uint8_t line[CHUNKED_MAX_LINE + 2];

    /* trailers: "name:value\n" for each, in arrival order, exactly what the trailer signature
     * covers; entries point into it. */
    int n_trailers;
    struct {
        size_t name_at, name_len, value_at, value_len;
    } trailers[CHUNKED_MAX_TRAILERS];
    size_t canonical_len;
    char canonical[CHUNKED_MAX_TRAILERS * (CHUNKED_MAX_TRAILER_NAME + CHUNKED_MAX_LINE + 2)];
    int have_trailer_signature;
    size_t trailer_signature_len;
    char trailer_signature[64]; /* only a 64-byte value can match; longer ones are not kept */

    /* the first error, kept: every later call fails with it */
    ChunkedErrorKind error;
    char message[CHUNKED_MESSAGE_SIZE];
} ChunkedState;

/* Prepare s for one body. signing_key (32 bytes), amz_date, scope and seed_signature_hex (64
 * characters) matter in signed modes only and may be NULL otherwise. trailer_names are UTF-8,
 * already lower-case. Returns 0, or -1 with s->error and s->message set; in both cases
 * chunked_release(s) frees what it holds. */
int chunked_init(ChunkedState *s, int signed_mode, int with_trailers, const uint8_t *signing_key,
                 const char *amz_date, const char *scope, const char *seed_signature_hex,
                 long long decoded_length, const char *const *trailer_names, int n_trailer_names);

/* Decode buf[0, n) in place: its data bytes are moved to buf[0, result). Returns that count, or
 * -1 with s->error and s->message set (and kept for every later call). */
ssize_t chunked_feed(ChunkedState *s, uint8_t *buf, size_t n);

/* The body ended here (no more input). Returns 0 when it is complete (some clients omit the
 * closing CRLF, or all trailers after the final chunk), else -1 with the error set. */
int chunked_finish(ChunkedState *s);

/* The final chunk, the trailers and the closing line were seen and every check passed. */
int chunked_done(const ChunkedState *s);

/* Free the OpenSSL contexts; s may then be initialised again. */
void chunked_release(ChunkedState *s);

/* "framing", "incomplete", "signature", "trailer", "argument" or "internal". */
const char *chunked_kind_name(ChunkedErrorKind kind);

/* -- the Python type aif_gateway._native.ChunkedDecoder (needs the GIL) ----------------------- */

/* Add ChunkedDecoder and ChunkedError to the module; 0, or -1 with an exception set. */
int aifnative_add_chunked(PyObject *module);

/* The state inside a ChunkedDecoder, or NULL with TypeError set. Between chunked_lock and
 * chunked_unlock the state may be used without the GIL: the lock keeps other threads (decode()
 * and the properties) away from it. chunked_lock is called with the GIL held and waits for the
 * lock without it. After a failed chunked_feed, chunked_raise turns the state's error into the
 * Python exception decode() would raise. */
ChunkedState *chunked_state_of(PyObject *decoder);
void chunked_lock(PyObject *decoder);
void chunked_unlock(PyObject *decoder);
PyObject *chunked_raise(const ChunkedState *s);

#endif
