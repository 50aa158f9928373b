/* stat_entries(directory, names, xattr, /): what a ListObjects page needs to know about the
 * regular files it returns, for a whole directory's worth of them in one call.
 *
 * For each name: lstat of directory/name (fstatat on the directory, opened once with O_PATH:
 * no path walk per name) and, for a regular file, the value of one extended attribute (the
 * object's metadata record; by path, as Linux before 6.13 has no getxattrat). A page of 1,000 keys is 2,000 system calls; made
 * from Python each costs more than the kernel's work (argument parsing, a stat_result of 20
 * fields, an OSError built and dropped for every file without a record), and each holds the
 * GIL. Here the whole batch runs without the GIL, so the event loop keeps serving meanwhile.
 *
 * Results are those of the pure-Python version aif_gateway.fsio.statbatch.py_stat_entries, which
 * tests/unit/native/test_listing.py compares with this, case by case:
 *   - four lists with one item per name, (modes, sizes, mtimes_ns, values): flat, not a tuple
 *     per name that the caller would only take apart again;
 *   - st_mode, st_size and st_mtime_ns of the name, or 0, 0, 0 when the stat says ENOENT or
 *     ENOTDIR (the name, or the directory, is gone: no file has mode 0);
 *   - value: bytes, or None when xattr is None, the entry is not a regular file, or the
 *     attribute is absent or unreadable (ENODATA, EACCES, ENOTSUP, EPERM, ENOENT);
 *   - any other errno raises OSError: for the directory when opening it failed, else for the
 *     first name (in order) that met it.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/xattr.h>

#include "listing.h"

/* Records are a few hundred bytes: most values fit a first read of this size; a larger one is
 * read again with the size the kernel reports. */
#define XATTR_FIRST_READ 1024

typedef struct {
    const char *path; /* into the batch's path arena: "directory/name" */
    const char *name; /* the name inside path */
    int gone;         /* the stat said ENOENT or ENOTDIR */
    int err;          /* an errno to raise, with path */
    struct stat st;
    char *value; /* malloc'd; NULL: no value */
    ssize_t value_len;
} Entry;

static int no_value(int err)
{
    return err == ENODATA || err == EACCES || err == ENOTSUP || err == EOPNOTSUPP || err == EPERM ||
           err == ENOENT;
}

/* The attribute's value into e->value, or none; 0, or -1 with e->err set (ENOMEM included). */
static int read_value(Entry *e, const char *name)
{
    char first[XATTR_FIRST_READ];
    ssize_t n = lgetxattr(e->path, name, first, sizeof first);
    while (n < 0 && errno == ERANGE) {
        /* Larger than the first read: ask the size, read exactly that; it may grow meanwhile. */
        ssize_t size = lgetxattr(e->path, name, NULL, 0);
        if (size < 0)
            break;
        free(e->value);
        e->value = malloc(size ? (size_t)size : 1);
        if (e->value == NULL) {
            e->err = ENOMEM;
            return -1;
        }
        n = lgetxattr(e->path, name, e->value, (size_t)size);
        if (n >= 0) {
            e->value_len = n;
            return 0;
        }
    }
    if (n < 0) {
        free(e->value);
        e->value = NULL;
        if (no_value(errno))
            return 0;
        e->err = errno;
        return -1;
    }
    e->value = malloc(n ? (size_t)n : 1);
    if (e->value == NULL) {
        e->err = ENOMEM;
        return -1;
    }
    memcpy(e->value, first, (size_t)n);
    e->value_len = n;
    return 0;
}

static void describe(int dir_fd, Entry *e, const char *xattr)
{
    if (fstatat(dir_fd, e->name, &e->st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            e->gone = 1;
        else
            e->err = errno;
        return;
    }
    if (xattr != NULL && S_ISREG(e->st.st_mode))
        read_value(e, xattr);
}

/* Fill item i of the four result lists from e; 0, or -1 with an exception set. */
static int store_result(PyObject *lists[4], Py_ssize_t i, const Entry *e)
{
    PyObject *items[4];
    if (e->gone) {
        items[0] = PyLong_FromLong(0);
        items[1] = PyLong_FromLong(0);
        items[2] = PyLong_FromLong(0);
    } else {
        items[0] = PyLong_FromUnsignedLong((unsigned long)e->st.st_mode);
        items[1] = PyLong_FromLongLong((long long)e->st.st_size);
        items[2] = PyLong_FromLongLong((long long)e->st.st_mtim.tv_sec * 1000000000LL + e->st.st_mtim.tv_nsec);
    }
    items[3] = e->value != NULL ? PyBytes_FromStringAndSize(e->value, e->value_len) : Py_NewRef(Py_None);
    int failed = 0;
    for (int k = 0; k < 4; k++) {
        if (items[k] == NULL)
            failed = 1;
        else
            PyList_SET_ITEM(lists[k], i, items[k]);
    }
    return failed ? -1 : 0;
}

static PyObject *stat_entries(PyObject *module, PyObject *args)
{
    PyObject *directory, *names_arg, *result = NULL, *seq = NULL, **encoded = NULL;
    const char *xattr;
    Entry *entries = NULL;
    char *arena = NULL;
    Py_ssize_t count = 0, i;
    size_t total = 0;
    if (!PyArg_ParseTuple(args, "O&Oz:stat_entries", PyUnicode_FSConverter, &directory, &names_arg, &xattr))
        return NULL;
    const char *dir = PyBytes_AS_STRING(directory);
    size_t dir_len = (size_t)PyBytes_GET_SIZE(directory);
    if (strlen(dir) != dir_len) {
        PyErr_SetString(PyExc_ValueError, "embedded null byte");
        goto done;
    }
    seq = PySequence_Fast(names_arg, "names must be a sequence of str");
    if (seq == NULL)
        goto done;
    count = PySequence_Fast_GET_SIZE(seq);

    /* "directory/name\0" for every name, in one allocation, built while we hold the GIL. */
    encoded = PyMem_Calloc(count ? (size_t)count : 1, sizeof *encoded);
    if (encoded == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = 0; i < count; i++) {
        PyObject *name = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyUnicode_Check(name)) {
            PyErr_SetString(PyExc_TypeError, "names must be a sequence of str");
            break;
        }
        encoded[i] = PyUnicode_EncodeFSDefault(name);
        if (encoded[i] == NULL)
            break;
        size_t len = (size_t)PyBytes_GET_SIZE(encoded[i]);
        if (strlen(PyBytes_AS_STRING(encoded[i])) != len) {
            PyErr_SetString(PyExc_ValueError, "embedded null byte");
            break;
        }
        total += dir_len + 1 + len + 1;
    }
    if (i == count) {
        entries = calloc(count ? (size_t)count : 1, sizeof *entries);
        arena = malloc(total ? total : 1);
        if (entries == NULL || arena == NULL)
            PyErr_NoMemory();
        else {
            char *at = arena;
            for (i = 0; i < count; i++) {
                size_t len = (size_t)PyBytes_GET_SIZE(encoded[i]);
                entries[i].path = at;
                entries[i].name = at + dir_len + 1;
                memcpy(at, dir, dir_len);
                at[dir_len] = '/';
                memcpy(at + dir_len + 1, PyBytes_AS_STRING(encoded[i]), len + 1);
                at += dir_len + 1 + len + 1;
            }
        }
    }
    for (Py_ssize_t j = 0; j < count; j++)
        Py_XDECREF(encoded[j]);
    PyMem_Free(encoded);
    encoded = NULL;
    if (PyErr_Occurred())
        goto done;

    int dir_err = 0;
    Py_BEGIN_ALLOW_THREADS
    int dir_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0)
        dir_err = errno;
    else {
        for (i = 0; i < count; i++)
            describe(dir_fd, &entries[i], xattr);
        close(dir_fd);
    }
    Py_END_ALLOW_THREADS
    if (dir_err == ENOENT || dir_err == ENOTDIR) {
        for (i = 0; i < count; i++)
            entries[i].gone = 1; /* the directory went, and its files with it */
    } else if (dir_err) {
        errno = dir_err;
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, dir);
        goto done;
    }

    for (i = 0; i < count; i++) {
        if (entries[i].err) {
            errno = entries[i].err;
            PyErr_SetFromErrnoWithFilename(PyExc_OSError, entries[i].path);
            goto done;
        }
    }
    PyObject *lists[4] = {PyList_New(count), PyList_New(count), PyList_New(count), PyList_New(count)};
    if (lists[0] != NULL && lists[1] != NULL && lists[2] != NULL && lists[3] != NULL) {
        for (i = 0; i < count; i++)
            if (store_result(lists, i, &entries[i]) < 0)
                break;
        if (i == count)
            result = PyTuple_Pack(4, lists[0], lists[1], lists[2], lists[3]);
    }
    for (int k = 0; k < 4; k++)
        Py_XDECREF(lists[k]);

done:
    if (entries != NULL) {
        for (i = 0; i < count; i++)
            free(entries[i].value);
        free(entries);
    }
    free(arena);
    Py_XDECREF(seq);
    Py_DECREF(directory);
    return result;
}

static PyMethodDef listing_methods[] = {
    {"stat_entries", stat_entries, METH_VARARGS,
     "stat_entries(directory, names, xattr, /) -> (modes, sizes, mtimes_ns, values)\n"
     "lstat of each directory/name and, for regular files, the xattr's value; GIL released."},
    {NULL, NULL, 0, NULL},
};

int aifnative_add_listing(PyObject *module)
{
    return PyModule_AddFunctions(module, listing_methods);
}
