/* copy_small_files(sources, dests, sizes, mtimes_ns, /): the staging engine's copy of a batch of
 * small files, in C and without the GIL for the whole batch.
 *
 * Staging a tree of many small files from a page-cache filesystem is CPU work: for each file
 * eight system calls and an xxh3 of a few KiB. Made from Python, each call also takes and drops
 * the GIL, and two threads copying at once spend more time handing the GIL to each other than
 * copying (on two cores, two Python threads took longer than one). Here a batch runs without
 * the GIL, so batches on different threads copy in parallel.
 *
 * Results are those of the pure-Python version aif_gateway.fsio.pysmallcopy.copy_small_files,
 * which tests/unit/native/test_stagecopy.py compares with this, case by case. For each file in
 * order, until the first failure:
 *   - open the source, read it in one buffer of size + 1 bytes (reading on until size bytes, or
 *     the end of the file), fstat it; it must have exactly the listed size and mtime_ns;
 *   - xxh3-64 of the content;
 *   - create the destination afresh (O_EXCL; an existing file or link there is unlinked first,
 *     never written through), mode = the source's permission bits | 0600; write the content;
 *     fstat it for its mtime; a failed write removes it.
 * Returns (xxh3s, dest_mtimes_ns, failure): the two lists hold one item per file copied;
 * failure is None, or (index, errno, step) for the file that failed, step being one of
 * "open_source", "read_source", "changed" (errno 0: size or mtime differ from the listing),
 * "create_dest", "write_dest". Arguments of the wrong type or length raise TypeError/ValueError.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "stagecopy.h"

typedef struct {
    const char *src;
    const char *dst;
    long long size;
    long long mtime_ns;
    unsigned long long xxh3;    /* out */
    long long dest_mtime_ns;    /* out */
} Job;

enum { STEP_OK, STEP_OPEN_SOURCE, STEP_READ_SOURCE, STEP_CHANGED, STEP_CREATE_DEST, STEP_WRITE_DEST };
static const char *const STEP_NAMES[] = {"", "open_source", "read_source", "changed", "create_dest", "write_dest"};

static long long mtime_ns(const struct stat *st)
{
    return (long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
}

/* One file; STEP_OK or the step that failed, with *err set (0 for STEP_CHANGED). */
static int copy_one(Job *job, char *buf, int *err)
{
    *err = 0;
    int fd = open(job->src, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *err = errno;
        return STEP_OPEN_SOURCE;
    }
    size_t want = (size_t)job->size + 1; /* one byte more than listed: notices a grown file */
    size_t n = 0;
    while (n < want) {
        ssize_t got = pread(fd, buf + n, want - n, (off_t)n);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            *err = errno;
            close(fd);
            return STEP_READ_SOURCE;
        }
        if (got == 0)
            break;
        n += (size_t)got;
        if (n == (size_t)job->size)
            break; /* short reads up to the listed size only: a grown file shows in fstat */
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        *err = errno;
        close(fd);
        return STEP_READ_SOURCE;
    }
    close(fd);
    if ((long long)n != job->size || st.st_size != job->size || mtime_ns(&st) != job->mtime_ns)
        return STEP_CHANGED;
    job->xxh3 = (unsigned long long)XXH3_64bits(buf, n);

    mode_t mode = (st.st_mode & 07777) | 0600;
    int out = open(job->dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (out < 0 && errno == EEXIST) {
        if (unlink(job->dst) < 0) { /* an older copy, or a link: replace it, never write through */
            *err = errno;
            return STEP_CREATE_DEST;
        }
        out = open(job->dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    }
    if (out < 0) {
        *err = errno;
        return STEP_CREATE_DEST;
    }
    size_t done = 0;
    while (done < n) {
        ssize_t put = pwrite(out, buf + done, n - done, (off_t)done);
        if (put < 0) {
            if (errno == EINTR)
                continue;
            *err = errno;
            break;
        }
        done += (size_t)put;
    }
    struct stat dst;
    if (*err == 0 && fstat(out, &dst) < 0)
        *err = errno;
    close(out);
    if (*err != 0) {
        unlink(job->dst);
        return STEP_WRITE_DEST;
    }
    job->dest_mtime_ns = mtime_ns(&dst);
    return STEP_OK;
}

static int path_at(PyObject *seq, Py_ssize_t i, PyObject **holder, const char **out)
{
    PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
    if (!PyUnicode_FSConverter(item, holder))
        return -1;
    *out = PyBytes_AS_STRING(*holder);
    return 0;
}

static PyObject *copy_small_files(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *sources_in, *dests_in, *sizes_in, *mtimes_in;
    if (!PyArg_ParseTuple(args, "OOOO:copy_small_files", &sources_in, &dests_in, &sizes_in, &mtimes_in))
        return NULL;
    PyObject *sources = NULL, *dests = NULL, *sizes = NULL, *mtimes = NULL, *result = NULL;
    PyObject **holders = NULL;
    Job *jobs = NULL;
    char *buf = NULL;
    Py_ssize_t count = 0, converted = 0;

    sources = PySequence_Fast(sources_in, "sources must be a sequence");
    dests = sources ? PySequence_Fast(dests_in, "dests must be a sequence") : NULL;
    sizes = dests ? PySequence_Fast(sizes_in, "sizes must be a sequence") : NULL;
    mtimes = sizes ? PySequence_Fast(mtimes_in, "mtimes_ns must be a sequence") : NULL;
    if (mtimes == NULL)
        goto done;
    count = PySequence_Fast_GET_SIZE(sources);
    if (PySequence_Fast_GET_SIZE(dests) != count || PySequence_Fast_GET_SIZE(sizes) != count ||
        PySequence_Fast_GET_SIZE(mtimes) != count) {
        PyErr_SetString(PyExc_ValueError, "sources, dests, sizes and mtimes_ns must have the same length");
        goto done;
    }
    jobs = PyMem_Calloc((size_t)count + 1, sizeof *jobs);
    holders = PyMem_Calloc(2 * (size_t)count + 1, sizeof *holders);
    if (jobs == NULL || holders == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    long long largest = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (path_at(sources, i, &holders[2 * i], &jobs[i].src) < 0)
            goto done;
        converted = 2 * i + 1;
        if (path_at(dests, i, &holders[2 * i + 1], &jobs[i].dst) < 0)
            goto done;
        converted = 2 * i + 2;
        jobs[i].size = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(sizes, i));
        jobs[i].mtime_ns = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(mtimes, i));
        if (PyErr_Occurred())
            goto done;
        if (jobs[i].size < 0 || jobs[i].size > (1LL << 30)) {
            PyErr_SetString(PyExc_ValueError, "sizes must be between 0 and 1 GiB");
            goto done;
        }
        if (jobs[i].size > largest)
            largest = jobs[i].size;
    }
    buf = malloc((size_t)largest + 1);
    if (buf == NULL) {
        PyErr_NoMemory();
        goto done;
    }

    Py_ssize_t copied = 0;
    int step = STEP_OK, err = 0;
    Py_BEGIN_ALLOW_THREADS
    for (; copied < count; copied++) {
        step = copy_one(&jobs[copied], buf, &err);
        if (step != STEP_OK)
            break;
    }
    Py_END_ALLOW_THREADS

    PyObject *hashes = PyList_New(copied);
    PyObject *dest_mtimes = PyList_New(copied);
    if (hashes == NULL || dest_mtimes == NULL) {
        Py_XDECREF(hashes);
        Py_XDECREF(dest_mtimes);
        goto done;
    }
    for (Py_ssize_t i = 0; i < copied; i++) {
        PyObject *h = PyLong_FromUnsignedLongLong(jobs[i].xxh3);
        PyObject *m = PyLong_FromLongLong(jobs[i].dest_mtime_ns);
        if (h == NULL || m == NULL) {
            Py_XDECREF(h);
            Py_XDECREF(m);
            Py_DECREF(hashes);
            Py_DECREF(dest_mtimes);
            goto done;
        }
        PyList_SET_ITEM(hashes, i, h);
        PyList_SET_ITEM(dest_mtimes, i, m);
    }
    if (step == STEP_OK)
        result = Py_BuildValue("(NNO)", hashes, dest_mtimes, Py_None);
    else
        result = Py_BuildValue("(NN(nis))", hashes, dest_mtimes, copied, err, STEP_NAMES[step]);

done:
    free(buf);
    if (holders != NULL) {
        for (Py_ssize_t i = 0; i < converted; i++)
            Py_XDECREF(holders[i]);
        PyMem_Free(holders);
    }
    PyMem_Free(jobs);
    Py_XDECREF(sources);
    Py_XDECREF(dests);
    Py_XDECREF(sizes);
    Py_XDECREF(mtimes);
    return result;
}

static PyMethodDef stagecopy_methods[] = {
    {"copy_small_files", copy_small_files, METH_VARARGS,
     "copy_small_files(sources, dests, sizes, mtimes_ns, /) -> (xxh3s, dest_mtimes_ns, failure): copy a "
     "batch of small files, checking each against its listed size and mtime, without the GIL."},
    {NULL, NULL, 0, NULL},
};

int aifnative_add_stagecopy(PyObject *module)
{
    return PyModule_AddFunctions(module, stagecopy_methods);
}
