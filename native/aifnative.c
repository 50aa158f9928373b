/* aif_gateway._native: the gateway's data path in C.
 *
 * Hashing (MD5 for ETags plus the S3 checksums and xxh3), hashing while writing, striped
 * parallel pread/pwrite, kernel-side copies, fallocate and aligned buffers. Every blocking or
 * long loop runs with the GIL released; inputs come through the buffer protocol. The pure-Python
 * version of each function is aif_gateway/fsio/pyengine.py, and the tests compare them byte for byte.
 *
 * Thread-safety: the CRC tables are written once (pthread_once) and only read afterwards; a
 * Hasher carries its own lock because its state is touched without the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <zlib.h>

/* Header-only xxHash (Debian's libxxhash-dev): no third-party source in this repository, and
 * no run-time library to link. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "awschunked.h"
#include "listing.h"
#include "posixcreds.h"
#include "stagecopy.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

/* Below this many bytes the work takes less time than releasing and retaking the GIL. */
#define GIL_RELEASE_MIN 4096
/* Every algorithm of a Hasher eats one block before the next, so each block is read from L2
 * by all of them instead of from memory once per algorithm. */
#define HASH_BLOCK (64 * 1024)
/* write_hashed hashes a block, then writes it while it is still in cache. */
#define WRITE_BLOCK (256 * 1024)
/* Bounce buffer of copy_range when the kernel cannot copy. */
#define COPY_BUFFER (1024 * 1024)
#define MAX_STRIPE_THREADS 64
/* recv_hashed's receive buffer: big enough that a fast sender fills it in one recv, small
 * enough that hashing it leaves it in L2/L3 for the pwrite. */
#define RECV_BUFFER (1024 * 1024)
/* How long recv_hashed's poll sleeps before it re-checks the stall deadline. */
#define RECV_POLL_SLICE_MS 500

/* ------------------------------------------------------------------------------------------ */
/* CRC tables and kernels                                                                      */

#define CRC32C_POLY 0x82F63B78u                /* reflected Castagnoli */
#define CRC64NVME_POLY 0x9A6C9329AC4BC9B5ull   /* reflected CRC-64/NVME */
#define CRC32_POLY_NORMAL 0x04C11DB7ull        /* CRC-32 (zlib, S3's CRC32), normal bit order */

static uint32_t crc32c_table[8][256];
static uint64_t crc64_table[8][256];
static int have_sse42, have_pclmul;
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

/* Carry-less folding constants of one CRC, bit-reflected: kN[0] moves the first (high-degree)
 * 64 bits of a 128-bit lane N bits forward, kN[1] the second. */
typedef struct {
    uint64_t k512[2], k384[2], k256[2], k128[2];
} FoldConstants;

static FoldConstants crc64_fold, crc32_fold;

static uint64_t reflect64(uint64_t v)
{
    uint64_t r = 0;
    for (int i = 0; i < 64; i++, v >>= 1)
        r = (r << 1) | (v & 1);
    return r;
}

/* x^n mod P, P = x^width + normal (normal bit order, width 32 or 64). */
static uint64_t xpow_mod(uint64_t normal, int width, int n)
{
    uint64_t r = 1, top = 1ull << (width - 1);
    while (n--)
        r = ((r & top) ? (r << 1) ^ normal : r << 1) & (width == 64 ? ~0ull : (1ull << width) - 1);
    return r;
}

/* Moving a lane X = H*x^64 + L forward by n bits is H*x^(n+64) + L*x^n mod P. A carry-less
 * multiply of reflected operands yields the product times x, hence the exponents minus one. */
static void fold_constants(FoldConstants *k, uint64_t normal, int width)
{
    uint64_t *pairs[] = {k->k512, k->k384, k->k256, k->k128};
    for (int i = 0; i < 4; i++) {
        int n = 512 - 128 * i;
        pairs[i][0] = reflect64(xpow_mod(normal, width, n + 64 - 1));
        pairs[i][1] = reflect64(xpow_mod(normal, width, n - 1));
    }
}

static void build_tables(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        uint64_t d = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
            d = (d & 1) ? (d >> 1) ^ CRC64NVME_POLY : d >> 1;
        }
        crc32c_table[0][i] = c;
        crc64_table[0][i] = d;
    }
    for (int t = 1; t < 8; t++) {
        for (int i = 0; i < 256; i++) {
            uint32_t c = crc32c_table[t - 1][i];
            uint64_t d = crc64_table[t - 1][i];
            crc32c_table[t][i] = (c >> 8) ^ crc32c_table[0][c & 0xff];
            crc64_table[t][i] = (d >> 8) ^ crc64_table[0][d & 0xff];
        }
    }
    fold_constants(&crc64_fold, reflect64(CRC64NVME_POLY), 64);
    fold_constants(&crc32_fold, CRC32_POLY_NORMAL, 32);
#if defined(__x86_64__)
    __builtin_cpu_init();
    /* AIF_NATIVE_CRC=table runs the table kernels on machines with SSE4.2 and PCLMULQDQ, so
     * the tests can compare them. */
    const char *force = getenv("AIF_NATIVE_CRC");
    int tables_only = force != NULL && strcmp(force, "table") == 0;
    have_sse42 = __builtin_cpu_supports("sse4.2") && !tables_only;
    have_pclmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1") && !tables_only;
#endif
}

/* Slicing-by-8: eight table lookups per 8 input bytes (little-endian loads). */
static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        v ^= crc;
        crc = crc32c_table[7][v & 0xff] ^ crc32c_table[6][(v >> 8) & 0xff] ^
              crc32c_table[5][(v >> 16) & 0xff] ^ crc32c_table[4][(v >> 24) & 0xff] ^
              crc32c_table[3][(v >> 32) & 0xff] ^ crc32c_table[2][(v >> 40) & 0xff] ^
              crc32c_table[1][(v >> 48) & 0xff] ^ crc32c_table[0][v >> 56];
    }
    while (n--)
        crc = crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p, size_t n)
{
    uint64_t c = ~crc;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
    }
    uint32_t c32 = (uint32_t)c;
    while (n--)
        c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}
#endif

static uint32_t crc32c_update(uint32_t crc, const uint8_t *p, size_t n)
{
#if defined(__x86_64__)
    if (have_sse42)
        return crc32c_sse42(crc, p, n);
#endif
    return crc32c_sw(crc, p, n);
}

/* The register after feeding bytes to a raw register (no inversions): the table kernel. */
static uint64_t crc64_raw_sw(uint64_t crc, const uint8_t *p, size_t n)
{
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        v ^= crc;
        crc = crc64_table[7][v & 0xff] ^ crc64_table[6][(v >> 8) & 0xff] ^
              crc64_table[5][(v >> 16) & 0xff] ^ crc64_table[4][(v >> 24) & 0xff] ^
              crc64_table[3][(v >> 32) & 0xff] ^ crc64_table[2][(v >> 40) & 0xff] ^
              crc64_table[1][(v >> 48) & 0xff] ^ crc64_table[0][v >> 56];
    }
    while (n--)
        crc = crc64_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
#include <wmmintrin.h>
#include <smmintrin.h>

__attribute__((target("pclmul,sse4.1"))) static inline __m128i fold(__m128i x, const uint64_t k[2], __m128i data)
{
    __m128i kk = _mm_set_epi64x((long long)k[1], (long long)k[0]);
    return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, kk, 0x00), _mm_clmulepi64_si128(x, kk, 0x11)), data);
}

/* Carry-less multiply folding (Intel's "Fast CRC Computation for Generic Polynomials Using
 * PCLMULQDQ") of a raw CRC register over n >= 64 bytes: four 16-byte lanes folded 64 bytes at a
 * time, then into one lane. Returns the bytes consumed (a multiple of 16); the CRC of the whole
 * input is then the raw CRC, from a zero register, of `last` followed by the bytes left. That
 * final step runs through the table kernel instead of a Barrett reduction: 16 to 31 bytes, a
 * negligible cost that keeps one kernel for every polynomial. */
__attribute__((target("pclmul,sse4.1"))) static size_t fold_lanes(const FoldConstants *k, uint64_t reg,
                                                                  const uint8_t *p, size_t n, uint8_t last[16])
{
    const uint8_t *start = p;
    __m128i x0 = _mm_loadu_si128((const __m128i *)p), x1 = _mm_loadu_si128((const __m128i *)(p + 16)),
            x2 = _mm_loadu_si128((const __m128i *)(p + 32)), x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    /* The register is congruent to the first bytes it is XORed into. */
    x0 = _mm_xor_si128(x0, _mm_cvtsi64_si128((long long)reg));
    p += 64;
    n -= 64;
    for (; n >= 64; p += 64, n -= 64) {
        x0 = fold(x0, k->k512, _mm_loadu_si128((const __m128i *)p));
        x1 = fold(x1, k->k512, _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = fold(x2, k->k512, _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = fold(x3, k->k512, _mm_loadu_si128((const __m128i *)(p + 48)));
    }
    __m128i x = fold(x0, k->k384, fold(x1, k->k256, fold(x2, k->k128, x3)));
    for (; n >= 16; p += 16, n -= 16)
        x = fold(x, k->k128, _mm_loadu_si128((const __m128i *)p));
    _mm_storeu_si128((__m128i *)last, x);
    return (size_t)(p - start);
}
#endif

static uint64_t crc64nvme_update(uint64_t crc, const uint8_t *p, size_t n)
{
#if defined(__x86_64__)
    if (have_pclmul && n >= 64) {
        uint8_t last[16];
        size_t done = fold_lanes(&crc64_fold, ~crc, p, n, last);
        return ~crc64_raw_sw(crc64_raw_sw(0, last, 16), p + done, n - done);
    }
#endif
    return ~crc64_raw_sw(~crc, p, n);
}

/* zlib's crc32_z inverts on entry and exit; these wrap it as a raw register kernel. */
static uint32_t crc32_raw_zlib(uint32_t reg, const uint8_t *p, size_t n)
{
    return ~(uint32_t)crc32_z(~reg, p, n);
}

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
#if defined(__x86_64__)
    if (have_pclmul && n >= 64) {
        uint8_t last[16];
        size_t done = fold_lanes(&crc32_fold, (uint32_t)~crc, p, n, last);
        return ~crc32_raw_zlib(crc32_raw_zlib(0, last, 16), p + done, n - done);
    }
#endif
    return (uint32_t)crc32_z(crc, p, n);
}

/* ------------------------------------------------------------------------------------------ */
/* Hasher                                                                                      */

enum {
    ALG_MD5 = 1 << 0,
    ALG_CRC32 = 1 << 1,
    ALG_CRC32C = 1 << 2,
    ALG_CRC64NVME = 1 << 3,
    ALG_SHA1 = 1 << 4,
    ALG_SHA256 = 1 << 5,
    ALG_XXH3_64 = 1 << 6,
};

static const struct {
    const char *name;
    unsigned flag;
} algorithm_names[] = {
    {"MD5", ALG_MD5},         {"CRC32", ALG_CRC32}, {"CRC32C", ALG_CRC32C}, {"CRC64NVME", ALG_CRC64NVME},
    {"SHA1", ALG_SHA1},       {"SHA256", ALG_SHA256}, {"XXH3_64", ALG_XXH3_64},
};
#define N_ALGORITHMS (sizeof(algorithm_names) / sizeof(algorithm_names[0]))

typedef struct {
    PyObject_HEAD
    /* Held by whoever touches the state below, with or without the GIL. */
    PyThread_type_lock lock;
    unsigned algorithms;
    EVP_MD_CTX *md5, *sha1, *sha256;
    uint32_t crc32, crc32c;
    uint64_t crc64nvme;
    XXH3_state_t *xxh3;
} HasherObject;

static PyTypeObject HasherType;

/* Take the Hasher's lock; if another thread holds it (working without the GIL), wait for it
 * without the GIL so that thread can finish. */
static void hasher_lock(HasherObject *self)
{
    if (!PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(self->lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
}

/* Feed bytes to every algorithm; runs without the GIL, under self->lock. Returns 0, or -1 when
 * OpenSSL failed (it does not fail for these digests once initialised). */
static int hasher_feed(HasherObject *self, const uint8_t *p, size_t n)
{
    unsigned a = self->algorithms;
    while (n) {
        size_t take = n < HASH_BLOCK ? n : HASH_BLOCK;
        if ((a & ALG_MD5) && !EVP_DigestUpdate(self->md5, p, take))
            return -1;
        if ((a & ALG_SHA1) && !EVP_DigestUpdate(self->sha1, p, take))
            return -1;
        if ((a & ALG_SHA256) && !EVP_DigestUpdate(self->sha256, p, take))
            return -1;
        if (a & ALG_CRC32)
            self->crc32 = crc32_update(self->crc32, p, take);
        if (a & ALG_CRC32C)
            self->crc32c = crc32c_update(self->crc32c, p, take);
        if (a & ALG_CRC64NVME)
            self->crc64nvme = crc64nvme_update(self->crc64nvme, p, take);
        if (a & ALG_XXH3_64)
            XXH3_64bits_update(self->xxh3, p, take);
        p += take;
        n -= take;
    }
    return 0;
}

static PyObject *hasher_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"algorithms", "md5", NULL};
    PyObject *algorithms;
    int with_md5 = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$p:Hasher", kwlist, &algorithms, &with_md5))
        return NULL;

    /* md5=False: writers whose objects carry no MD5 ETag (checkpoint files written straight to
       the tree) skip the one digest that runs at a fraction of memory speed. */
    unsigned flags = with_md5 ? ALG_MD5 : 0;
    PyObject *it = PyObject_GetIter(algorithms);
    if (it == NULL)
        return NULL;
    PyObject *item;
    while ((item = PyIter_Next(it)) != NULL) {
        const char *name = PyUnicode_Check(item) ? PyUnicode_AsUTF8(item) : NULL;
        unsigned flag = 0;
        for (size_t i = 0; name != NULL && i < N_ALGORITHMS; i++)
            if (strcmp(name, algorithm_names[i].name) == 0)
                flag = algorithm_names[i].flag;
        if (flag == 0) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "unknown checksum algorithm %R", item);
            Py_DECREF(item);
            Py_DECREF(it);
            return NULL;
        }
        flags |= flag;
        Py_DECREF(item);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;

    HasherObject *self = (HasherObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->algorithms = flags;
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    struct {
        unsigned flag;
        EVP_MD_CTX **ctx;
        const EVP_MD *md;
    } digests[] = {
        {ALG_MD5, &self->md5, EVP_md5()},
        {ALG_SHA1, &self->sha1, EVP_sha1()},
        {ALG_SHA256, &self->sha256, EVP_sha256()},
    };
    for (size_t i = 0; i < sizeof(digests) / sizeof(digests[0]); i++) {
        if (!(flags & digests[i].flag))
            continue;
        *digests[i].ctx = EVP_MD_CTX_new();
        if (*digests[i].ctx == NULL || !EVP_DigestInit_ex(*digests[i].ctx, digests[i].md, NULL)) {
            Py_DECREF(self);
            /* A FIPS-only OpenSSL refuses MD5: say so rather than hash nothing. */
            PyErr_SetString(PyExc_ValueError, "OpenSSL cannot provide a requested digest");
            return NULL;
        }
    }
    if (flags & ALG_XXH3_64) {
        self->xxh3 = XXH3_createState();
        if (self->xxh3 == NULL) {
            Py_DECREF(self);
            return PyErr_NoMemory();
        }
        XXH3_64bits_reset(self->xxh3);
    }
    return (PyObject *)self;
}

static void hasher_dealloc(HasherObject *self)
{
    EVP_MD_CTX_free(self->md5);
    EVP_MD_CTX_free(self->sha1);
    EVP_MD_CTX_free(self->sha256);
    if (self->xxh3 != NULL)
        XXH3_freeState(self->xxh3);
    if (self->lock != NULL)
        PyThread_free_lock(self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Hash a buffer the caller already holds; takes the lock, and drops the GIL when it pays. */
static int hasher_update_buffer(HasherObject *self, const Py_buffer *view)
{
    int rc;
    hasher_lock(self);
    if (view->len >= GIL_RELEASE_MIN) {
        Py_BEGIN_ALLOW_THREADS
        rc = hasher_feed(self, view->buf, (size_t)view->len);
        Py_END_ALLOW_THREADS
    } else {
        rc = hasher_feed(self, view->buf, (size_t)view->len);
    }
    PyThread_release_lock(self->lock);
    if (rc < 0)
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL digest update failed");
    return rc;
}

static PyObject *hasher_update(HasherObject *self, PyObject *data)
{
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    int rc = hasher_update_buffer(self, &view);
    PyBuffer_Release(&view);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static void put_big_endian(uint8_t *out, uint64_t value, int size)
{
    for (int i = size - 1; i >= 0; i--, value >>= 8)
        out[i] = (uint8_t)value;
}

/* The digest of what was fed so far, leaving the running state untouched. */
static int evp_peek(EVP_MD_CTX *ctx, uint8_t *out, unsigned *len)
{
    EVP_MD_CTX *copy = EVP_MD_CTX_new();
    int ok = copy != NULL && EVP_MD_CTX_copy_ex(copy, ctx) && EVP_DigestFinal_ex(copy, out, len);
    EVP_MD_CTX_free(copy);
    return ok;
}

static int set_digest(PyObject *out, const char *name, const uint8_t *digest, size_t len)
{
    PyObject *value = PyBytes_FromStringAndSize((const char *)digest, (Py_ssize_t)len);
    if (value == NULL)
        return -1;
    int rc = PyDict_SetItemString(out, name, value);
    Py_DECREF(value);
    return rc;
}

static PyObject *hasher_digests(HasherObject *self, PyObject *Py_UNUSED(ignored))
{
    uint8_t md5[EVP_MAX_MD_SIZE], sha1[EVP_MAX_MD_SIZE], sha256[EVP_MAX_MD_SIZE];
    uint8_t crc32[4], crc32c[4], crc64[8], xxh3[8];
    unsigned md5_len = 0, sha1_len = 0, sha256_len = 0;
    unsigned a = self->algorithms;
    int ok = 1;

    hasher_lock(self);
    if (a & ALG_MD5)
        ok &= evp_peek(self->md5, md5, &md5_len);
    if (a & ALG_SHA1)
        ok &= evp_peek(self->sha1, sha1, &sha1_len);
    if (a & ALG_SHA256)
        ok &= evp_peek(self->sha256, sha256, &sha256_len);
    put_big_endian(crc32, self->crc32, 4);
    put_big_endian(crc32c, self->crc32c, 4);
    put_big_endian(crc64, self->crc64nvme, 8);
    if (a & ALG_XXH3_64)
        put_big_endian(xxh3, XXH3_64bits_digest(self->xxh3), 8);
    PyThread_release_lock(self->lock);
    if (!ok) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL digest final failed");
        return NULL;
    }

    PyObject *out = PyDict_New();
    if (out == NULL)
        return NULL;
    if (((a & ALG_MD5) && set_digest(out, "MD5", md5, md5_len) < 0) ||
        ((a & ALG_CRC32) && set_digest(out, "CRC32", crc32, 4) < 0) ||
        ((a & ALG_CRC32C) && set_digest(out, "CRC32C", crc32c, 4) < 0) ||
        ((a & ALG_CRC64NVME) && set_digest(out, "CRC64NVME", crc64, 8) < 0) ||
        ((a & ALG_SHA1) && set_digest(out, "SHA1", sha1, sha1_len) < 0) ||
        ((a & ALG_SHA256) && set_digest(out, "SHA256", sha256, sha256_len) < 0) ||
        ((a & ALG_XXH3_64) && set_digest(out, "XXH3_64", xxh3, 8) < 0)) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

static PyMethodDef hasher_methods[] = {
    {"update", (PyCFunction)hasher_update, METH_O, "Hash the bytes of a buffer."},
    {"digests", (PyCFunction)hasher_digests, METH_NOARGS,
     "Raw digests so far, keyed by algorithm; CRCs and XXH3_64 are big-endian."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject HasherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "aif_gateway._native.Hasher",
    .tp_doc = "Hasher(algorithms, *, md5=True): MD5 (unless md5=False) plus the named algorithms, fed in one pass.",
    .tp_basicsize = sizeof(HasherObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = hasher_new,
    .tp_dealloc = (destructor)hasher_dealloc,
    .tp_methods = hasher_methods,
};

/* ------------------------------------------------------------------------------------------ */
/* Whole-buffer pread/pwrite                                                                   */

/* pwrite all of [p, p+n) at off; retries short writes and EINTR. 0, or an errno. */
static int pwrite_all(int fd, const uint8_t *p, size_t n, off_t off)
{
    while (n) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

/* pread into [p, p+n) from off until full or end of file; *got is what arrived. 0, or an errno. */
static int pread_full(int fd, uint8_t *p, size_t n, off_t off, size_t *got)
{
    *got = 0;
    while (*got < n) {
        ssize_t r = pread(fd, p + *got, n - *got, off + (off_t)*got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return 0;
}

static PyObject *oserror(int err)
{
    errno = err;
    return PyErr_SetFromErrno(PyExc_OSError);
}

static int check_offset(long long offset)
{
    if (offset < 0) {
        PyErr_SetString(PyExc_ValueError, "offset must be >= 0");
        return -1;
    }
    return 0;
}

static PyObject *write_hashed(PyObject *module, PyObject *args)
{
    int fd;
    Py_buffer view;
    long long offset;
    HasherObject *hasher;
    if (!PyArg_ParseTuple(args, "iy*LO!:write_hashed", &fd, &view, &offset, &HasherType, &hasher))
        return NULL;
    if (check_offset(offset) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    int err = 0, hash_failed = 0;
    const uint8_t *p = view.buf;
    size_t left = (size_t)view.len;
    hasher_lock(hasher);
    Py_BEGIN_ALLOW_THREADS
    while (left && !err && !hash_failed) {
        size_t take = left < WRITE_BLOCK ? left : WRITE_BLOCK;
        hash_failed = hasher_feed(hasher, p, take) < 0;
        if (!hash_failed)
            err = pwrite_all(fd, p, take, (off_t)offset);
        p += take;
        left -= take;
        offset += (long long)take;
    }
    Py_END_ALLOW_THREADS
    PyThread_release_lock(hasher->lock);
    Py_ssize_t written = view.len;
    PyBuffer_Release(&view);
    if (hash_failed) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL digest update failed");
        return NULL;
    }
    if (err)
        return oserror(err);
    return PyLong_FromSsize_t(written);
}

/* ------------------------------------------------------------------------------------------ */
/* Socket to file                                                                              */

/* Why recv_hashed failed, for the exception raised once the GIL is back. */
enum { RECV_OK, RECV_ERRNO, RECV_EOF, RECV_STALL, RECV_HASH, RECV_DECODE };

/* Wait until sock is readable (or has an error/hangup, which the next recv reports); RECV_STALL
 * after stall_ms without a byte. */
static int wait_readable(int sock, long long stall_ms, int *err)
{
    long long waited = 0;
    struct pollfd pfd = {.fd = sock, .events = POLLIN};
    for (;;) {
        int r = poll(&pfd, 1, RECV_POLL_SLICE_MS);
        if (r > 0)
            return RECV_OK;
        if (r < 0 && errno != EINTR) {
            *err = errno;
            return RECV_ERRNO;
        }
        if (r == 0 && (waited += RECV_POLL_SLICE_MS) >= stall_ms)
            return RECV_STALL;
    }
}

/* recv_hashed(sock_fd, file_fd, offset, count, hasher, stall_timeout_ms, decoder=None) -> int
 * Reads exactly count bytes from the (non-blocking) socket; writes them, or with a
 * ChunkedDecoder the data they decode to, at offset, hashing what it writes; returns the bytes
 * written. The socket's flags are left alone (it belongs to an event loop): EAGAIN waits in poll. */
static PyObject *recv_hashed(PyObject *module, PyObject *args)
{
    int sock, fd;
    long long offset, count, stall_ms;
    HasherObject *hasher;
    PyObject *decoder = Py_None;
    if (!PyArg_ParseTuple(args, "iiLLO!L|O:recv_hashed", &sock, &fd, &offset, &count, &HasherType, &hasher,
                          &stall_ms, &decoder))
        return NULL;
    ChunkedState *chunked = NULL;
    if (decoder != Py_None && (chunked = chunked_state_of(decoder)) == NULL)
        return NULL;
    if (check_offset(offset) < 0)
        return NULL;
    if (count < 0 || stall_ms <= 0) {
        PyErr_SetString(PyExc_ValueError, "count must be >= 0 and stall_timeout_ms > 0");
        return NULL;
    }
    size_t cap = count < RECV_BUFFER ? (size_t)count : RECV_BUFFER;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (buf == NULL)
        return PyErr_NoMemory();
    int failure = RECV_OK, err = 0;
    long long done = 0, written = 0;
    if (chunked != NULL)
        chunked_lock(decoder);
    hasher_lock(hasher);
    Py_BEGIN_ALLOW_THREADS
    while (done < count && failure == RECV_OK) {
        size_t want = (size_t)(count - done) < cap ? (size_t)(count - done) : cap;
        ssize_t got = recv(sock, buf, want, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                failure = wait_readable(sock, stall_ms, &err);
                continue;
            }
            failure = RECV_ERRNO;
            err = errno;
            break;
        }
        if (got == 0) {
            failure = RECV_EOF;
            break;
        }
        done += got;
        size_t data = (size_t)got;
        if (chunked != NULL) {
            ssize_t decoded = chunked_feed(chunked, buf, (size_t)got);
            if (decoded < 0) {
                failure = RECV_DECODE;
                break;
            }
            data = (size_t)decoded;
        }
        if (hasher_feed(hasher, buf, data) < 0) {
            failure = RECV_HASH;
            break;
        }
        if ((err = pwrite_all(fd, buf, data, (off_t)(offset + written))) != 0) {
            failure = RECV_ERRNO;
            break;
        }
        written += (long long)data;
    }
    Py_END_ALLOW_THREADS
    PyThread_release_lock(hasher->lock);
    free(buf);
    PyObject *decode_error = NULL;
    if (failure == RECV_DECODE)
        decode_error = chunked_raise(chunked);  /* NULL with the decoder's ChunkedError set */
    if (chunked != NULL)
        chunked_unlock(decoder);
    switch (failure) {
    case RECV_OK:
        return PyLong_FromLongLong(written);
    case RECV_DECODE:
        return decode_error;
    case RECV_EOF:
        return PyErr_Format(PyExc_ConnectionResetError,
                            "the client closed the connection after %lld of %lld body bytes", done, count);
    case RECV_STALL:
        return PyErr_Format(PyExc_TimeoutError, "the client sent nothing for %lld ms", stall_ms);
    case RECV_HASH:
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL digest update failed");
        return NULL;
    default:
        return oserror(err);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Striped parallel I/O                                                                        */

/* One striped transfer: pieces are the stripe-aligned slices of [offset, offset+len), handed
 * out by an atomic counter to the calling thread and its helpers. */
typedef struct {
    int fd;
    int writing;
    uint8_t *buf;
    long long offset;
    size_t len;
    size_t stripe;
    size_t first_piece_len; /* the first piece ends at the next stripe boundary */
    size_t pieces;
    size_t next_piece;      /* atomic */
    int error;              /* atomic: the first errno, 0 while none */
    size_t end_of_data;     /* atomic min: bytes from offset before end of file (reads) */
} Stripes;

static void piece_bounds(const Stripes *s, size_t i, size_t *start, size_t *len)
{
    if (i == 0) {
        *start = 0;
        *len = s->first_piece_len;
    } else {
        *start = s->first_piece_len + (i - 1) * s->stripe;
        *len = s->len - *start < s->stripe ? s->len - *start : s->stripe;
    }
}

static void *stripes_work(void *arg)
{
    Stripes *s = arg;
    for (;;) {
        if (__atomic_load_n(&s->error, __ATOMIC_RELAXED))
            break;
        size_t i = __atomic_fetch_add(&s->next_piece, 1, __ATOMIC_RELAXED);
        if (i >= s->pieces)
            break;
        size_t start, len, got = 0;
        piece_bounds(s, i, &start, &len);
        off_t at = (off_t)(s->offset + (long long)start);
        int err = s->writing ? pwrite_all(s->fd, s->buf + start, len, at)
                             : pread_full(s->fd, s->buf + start, len, at, &got);
        if (err) {
            int none = 0;
            __atomic_compare_exchange_n(&s->error, &none, err, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
            break;
        }
        if (!s->writing && got < len) {
            size_t end = start + got, seen = __atomic_load_n(&s->end_of_data, __ATOMIC_RELAXED);
            while (end < seen &&
                   !__atomic_compare_exchange_n(&s->end_of_data, &seen, end, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
                ;
        }
    }
    return NULL;
}

/* Run the transfer on `threads` threads, the caller being one; called without the GIL. Helper
 * threads block every signal so that signals keep going to Python's threads. */
static void stripes_run(Stripes *s, int threads)
{
    pthread_t helpers[MAX_STRIPE_THREADS];
    int started = 0;
    if ((size_t)threads > s->pieces)
        threads = (int)s->pieces;
    if (threads > 1) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        /* A helper that cannot start leaves its pieces to the others. */
        while (started < threads - 1 && pthread_create(&helpers[started], NULL, stripes_work, s) == 0)
            started++;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    stripes_work(s);
    for (int i = 0; i < started; i++)
        pthread_join(helpers[i], NULL);
}

static PyObject *striped(PyObject *args, int writing)
{
    int fd, threads;
    Py_buffer view;
    long long offset, stripe;
    if (!PyArg_ParseTuple(args, writing ? "iy*LLi:pwrite_striped" : "iw*LLi:pread_striped", &fd, &view, &offset,
                          &stripe, &threads))
        return NULL;
    if (check_offset(offset) < 0 || stripe <= 0 || threads <= 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "stripe_size and threads must be > 0");
        PyBuffer_Release(&view);
        return NULL;
    }
    Stripes s = {
        .fd = fd,
        .writing = writing,
        .buf = view.buf,
        .offset = offset,
        .len = (size_t)view.len,
        .stripe = (size_t)stripe,
        .end_of_data = (size_t)view.len,
    };
    size_t to_boundary = (size_t)stripe - (size_t)(offset % stripe);
    s.first_piece_len = s.len < to_boundary ? s.len : to_boundary;
    s.pieces = s.len == 0 ? 0 : 1 + (s.len - s.first_piece_len + s.stripe - 1) / s.stripe;
    if (threads > MAX_STRIPE_THREADS)
        threads = MAX_STRIPE_THREADS;
    Py_BEGIN_ALLOW_THREADS
    stripes_run(&s, threads);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (s.error)
        return oserror(s.error);
    return PyLong_FromSize_t(s.end_of_data);
}

static PyObject *pwrite_striped(PyObject *module, PyObject *args) { return striped(args, 1); }
static PyObject *pread_striped(PyObject *module, PyObject *args) { return striped(args, 0); }

/* ------------------------------------------------------------------------------------------ */
/* Copies, reflinks, preallocation                                                             */

/* copy_file_range cannot serve this pair of files (another filesystem, an old kernel, a special
 * file, an O_APPEND target): copy through this process instead. */
static int kernel_copy_unsupported(int err)
{
    return err == EXDEV || err == EINVAL || err == ENOSYS || err == EOPNOTSUPP || err == EBADF;
}

static int copy_through_buffer(int src, int dst, off_t src_off, off_t dst_off, size_t length, size_t *copied)
{
    uint8_t *buf = malloc(COPY_BUFFER);
    if (buf == NULL)
        return ENOMEM;
    int err = 0;
    while (*copied < length) {
        size_t want = length - *copied < COPY_BUFFER ? length - *copied : COPY_BUFFER, got;
        err = pread_full(src, buf, want, src_off + (off_t)*copied, &got);
        if (!err && got)
            err = pwrite_all(dst, buf, got, dst_off + (off_t)*copied);
        if (err || got == 0)
            break;
        *copied += got;
    }
    free(buf);
    return err;
}

static int copy_all(int src, int dst, off_t src_off, off_t dst_off, size_t length, size_t *copied)
{
    *copied = 0;
    while (*copied < length) {
        loff_t in = src_off + (off_t)*copied, out = dst_off + (off_t)*copied;
        ssize_t n = copy_file_range(src, &in, dst, &out, length - *copied, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && !kernel_copy_unsupported(errno))
            return errno;
        if (n <= 0)
            break; /* unsupported, or 0: the end of the source or a filesystem that copies nothing */
        *copied += (size_t)n;
    }
    return *copied < length ? copy_through_buffer(src, dst, src_off, dst_off, length, copied) : 0;
}

static PyObject *copy_range(PyObject *module, PyObject *args)
{
    int src, dst;
    long long src_off, dst_off, length;
    if (!PyArg_ParseTuple(args, "iiLLL:copy_range", &src, &dst, &src_off, &dst_off, &length))
        return NULL;
    if (check_offset(src_off) < 0 || check_offset(dst_off) < 0 || check_offset(length) < 0)
        return NULL;
    size_t copied;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = copy_all(src, dst, (off_t)src_off, (off_t)dst_off, (size_t)length, &copied);
    Py_END_ALLOW_THREADS
    if (err)
        return oserror(err);
    return PyLong_FromSize_t(copied);
}

static PyObject *reflink(PyObject *module, PyObject *args)
{
    int src, dst, rc;
    if (!PyArg_ParseTuple(args, "ii:reflink", &src, &dst))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = ioctl(dst, FICLONE, src);
    Py_END_ALLOW_THREADS
    if (rc == 0)
        Py_RETURN_TRUE;
    if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EXDEV || errno == EINVAL || errno == ENOSYS)
        Py_RETURN_FALSE;
    return PyErr_SetFromErrno(PyExc_OSError);
}

static PyObject *fallocate_(PyObject *module, PyObject *args)
{
    int fd, err;
    long long offset, length;
    if (!PyArg_ParseTuple(args, "iLL:fallocate", &fd, &offset, &length))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    err = posix_fallocate(fd, (off_t)offset, (off_t)length);
    Py_END_ALLOW_THREADS
    if (err)
        return oserror(err);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------ */
/* Aligned buffers (O_DIRECT)                                                                  */

typedef struct {
    PyObject_HEAD
    void *data;
    Py_ssize_t size;
} AlignedBufferObject;

static int aligned_getbuffer(AlignedBufferObject *self, Py_buffer *view, int flags)
{
    return PyBuffer_FillInfo(view, (PyObject *)self, self->data, self->size, 0, flags);
}

static void aligned_dealloc(AlignedBufferObject *self)
{
    free(self->data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t aligned_len(AlignedBufferObject *self) { return self->size; }

static PyBufferProcs aligned_as_buffer = {.bf_getbuffer = (getbufferproc)aligned_getbuffer};
static PySequenceMethods aligned_as_sequence = {.sq_length = (lenfunc)aligned_len};

static PyTypeObject AlignedBufferType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "aif_gateway._native.AlignedBuffer",
    .tp_doc = "Zeroed, writable memory at an aligned address (buffer protocol).",
    .tp_basicsize = sizeof(AlignedBufferObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)aligned_dealloc,
    .tp_as_buffer = &aligned_as_buffer,
    .tp_as_sequence = &aligned_as_sequence,
};

static PyObject *aligned_buffer(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"size", "alignment", NULL};
    Py_ssize_t size, alignment = 4096;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n|n:aligned_buffer", kwlist, &size, &alignment))
        return NULL;
    if (size < 0 || alignment < (Py_ssize_t)sizeof(void *) || (alignment & (alignment - 1))) {
        PyErr_SetString(PyExc_ValueError, "size must be >= 0 and alignment a power of two >= 8");
        return NULL;
    }
    void *data;
    int err = posix_memalign(&data, (size_t)alignment, size ? (size_t)size : 1);
    if (err)
        return oserror(err);
    memset(data, 0, size ? (size_t)size : 1);
    AlignedBufferObject *self = PyObject_New(AlignedBufferObject, &AlignedBufferType);
    if (self == NULL) {
        free(data);
        return NULL;
    }
    self->data = data;
    self->size = size;
    return (PyObject *)self;
}

/* ------------------------------------------------------------------------------------------ */
/* Module                                                                                      */

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define XXH_VERSION_TEXT \
    STRINGIFY(XXH_VERSION_MAJOR) "." STRINGIFY(XXH_VERSION_MINOR) "." STRINGIFY(XXH_VERSION_RELEASE)

static PyObject *engine_info(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("{ss ss ss ss ss ss ss}", "engine", "native", "crc32c", have_sse42 ? "sse4.2" : "table",
                         "crc64nvme", have_pclmul ? "pclmul" : "slicing-by-8", "crc32", have_pclmul ? "pclmul" : "zlib " ZLIB_VERSION, "md5", OPENSSL_VERSION_TEXT,
                         "xxh3", "xxhash.h " XXH_VERSION_TEXT, "openat2", aifnative_open_beneath_mode());
}

static PyMethodDef module_methods[] = {
    {"write_hashed", write_hashed, METH_VARARGS,
     "write_hashed(fd, buffer, offset, hasher) -> int: pwrite all of buffer at offset, hashing it."},
    {"recv_hashed", recv_hashed, METH_VARARGS,
     "recv_hashed(sock_fd, file_fd, offset, count, hasher, stall_timeout_ms, decoder=None) -> int: "
     "socket to file, hashing (and aws-chunked decoding)."},
    {"pwrite_striped", pwrite_striped, METH_VARARGS,
     "pwrite_striped(fd, buffer, offset, stripe_size, threads) -> int: stripe-aligned pieces in parallel."},
    {"pread_striped", pread_striped, METH_VARARGS,
     "pread_striped(fd, buffer, offset, stripe_size, threads) -> int: bytes read before end of file."},
    {"copy_range", copy_range, METH_VARARGS,
     "copy_range(src_fd, dst_fd, src_offset, dst_offset, length) -> int: bytes copied."},
    {"reflink", reflink, METH_VARARGS, "reflink(src_fd, dst_fd) -> bool: FICLONE; False where unsupported."},
    {"fallocate", fallocate_, METH_VARARGS, "fallocate(fd, offset, length): posix_fallocate."},
    {"aligned_buffer", (PyCFunction)(void (*)(void))aligned_buffer, METH_VARARGS | METH_KEYWORDS,
     "aligned_buffer(size, alignment=4096) -> AlignedBuffer."},
    {"engine_info", engine_info, METH_NOARGS, "engine_info() -> dict: which implementation does what."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "aif_gateway._native",
    .m_doc = "The gateway's native data path; aif_gateway.fsio.pyengine is its pure-Python version.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__native(void)
{
    pthread_once(&tables_once, build_tables);
    if (PyType_Ready(&HasherType) < 0 || PyType_Ready(&AlignedBufferType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Hasher", (PyObject *)&HasherType) < 0 ||
        PyModule_AddObjectRef(m, "AlignedBuffer", (PyObject *)&AlignedBufferType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (aifnative_add_chunked(m) < 0 || aifnative_add_listing(m) < 0 || aifnative_add_stagecopy(m) < 0 ||
        aifnative_add_posixcreds(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
