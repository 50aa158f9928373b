/* Per-thread POSIX credentials and opens beneath a directory: the two kernel primitives the
 * gateway's per-user identity and its internal state stand on.
 *
 * Credentials. Linux keeps credentials per thread; permission checks on files use the calling
 * thread's fsuid, fsgid and supplementary groups. glibc's setgroups()/setuid() broadcast a change
 * to every thread of the process (POSIX asks for that), so the groups are set with the raw
 * SYS_setgroups syscall, and the ids with setfsgid/setfsuid, which glibc never broadcasts (raw
 * syscalls here too, so no libc can change that). An fsuid other than 0 drops the filesystem
 * capabilities (CAP_DAC_OVERRIDE, CAP_FOWNER, ...) from the thread; fsuid 0 brings them back.
 * setfsuid/setfsgid return the previous id whether or not they succeeded: each is called a
 * second time with -1 (an invalid id, which changes nothing) to read back the id in force.
 * These calls take well under a microsecond: the GIL is kept, and the switch therefore happens
 * on the OS thread that goes on to run the caller's Python code.
 *
 * Opens beneath a directory. openat2(2) (Linux >= 5.6) with the caller's RESOLVE_* flags, the
 * GIL released. Where the kernel lacks it (ENOSYS, or EPERM/E2BIG from a seccomp filter when
 * the module is imported; ENOSYS later) or AIF_OPENAT2=0 is in the environment (read at each
 * call), a component walk instead: absolute paths and ".." components are refused with EXDEV
 * before anything is opened, each directory is opened with O_PATH|O_DIRECTORY|O_NOFOLLOW
 * relative to the one before, the last component with O_NOFOLLOW. The walk therefore refuses
 * every symlink (ELOOP), stricter than RESOLVE_BENEATH alone, which follows symlinks that stay
 * beneath; RESOLVE_NO_XDEV is checked there by comparing st_dev (a bind mount of the same
 * filesystem is not noticed).
 *
 * The pure-Python version is aif_gateway/fsio/pyposixcreds.py; tests/unit/native/test_posixcreds.py and
 * tests/unit/native/test_posixcreds_open_beneath.py run every case on both.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "posixcreds.h"

#ifndef SYS_openat2
#define SYS_openat2 437 /* the same number on every architecture but alpha */
#endif
/* linux/openat2.h; defined here so that no libc header that adds its own copy can clash. */
#define RESOLVE_NO_XDEV 0x01
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_NO_SYMLINKS 0x04
#define RESOLVE_BENEATH 0x08
#define RESOLVE_KNOWN (RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)

struct aif_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

#define MAX_ID 4294967294U /* (uid_t)-1 means "no change" to the kernel */
#define STACK_GROUPS 32

/* ------------------------------------------------------------------------------------------ */
/* Credentials                                                                                 */

/* The process's supplementary groups when the module was imported: what restore_thread_creds
 * puts back. Written once, at import, with the GIL held. */
static gid_t *process_groups;
static size_t process_ngroups;

/* This thread's supplementary groups (raw getgroups: per thread), malloc'ed; 0 or -1 with errno. */
static int read_groups(gid_t **list, size_t *count)
{
    long n = syscall(SYS_getgroups, 0, NULL);
    if (n < 0)
        return -1;
    gid_t *buf = malloc(((size_t)n + 1) * sizeof *buf);
    if (buf == NULL) {
        errno = ENOMEM;
        return -1;
    }
    n = syscall(SYS_getgroups, n, buf);
    if (n < 0) {
        int err = errno;
        free(buf);
        errno = err;
        return -1;
    }
    *list = buf;
    *count = (size_t)n;
    return 0;
}

static int compare_gids(const void *a, const void *b)
{
    gid_t x = *(const gid_t *)a, y = *(const gid_t *)b;
    return (x > y) - (x < y);
}

/* Does this thread hold exactly these groups already (in any order)? */
static int thread_has_groups(size_t n, const gid_t *want)
{
    gid_t *have;
    size_t count;
    if (read_groups(&have, &count) < 0)
        return 0;
    gid_t *sorted = malloc((n + 1) * sizeof *sorted);
    int same = 0;
    if (sorted != NULL && count == n) {
        memcpy(sorted, want, n * sizeof *sorted);
        qsort(sorted, n, sizeof *sorted, compare_gids);
        qsort(have, n, sizeof *have, compare_gids);
        same = memcmp(sorted, have, n * sizeof *have) == 0;
    }
    free(sorted);
    free(have);
    return same;
}

/* Without CAP_SETGID (a gateway run by an ordinary user) setgroups fails even when nothing would
 * change: that case is a success, so restoring always works. 0, or -1 with errno. */
static int set_groups(size_t n, const gid_t *list)
{
    if (syscall(SYS_setgroups, n, list) == 0)
        return 0;
    int err = errno;
    if (err == EPERM && thread_has_groups(n, list))
        return 0;
    errno = err;
    return -1;
}

/* setfsuid or setfsgid, checked by reading the id back; 0, or -1 with errno EPERM. */
static int set_fs_id(long nr, unsigned int id)
{
    syscall(nr, (long)id);
    if ((unsigned int)syscall(nr, -1L) != id) {
        errno = EPERM;
        return -1;
    }
    return 0;
}

/* Groups first, then fsgid, then fsuid; 0 or the errno of the step that failed. */
static int switch_creds(uid_t uid, gid_t gid, size_t n, const gid_t *groups)
{
    if (set_groups(n, groups) < 0 || set_fs_id(SYS_setfsgid, gid) < 0 || set_fs_id(SYS_setfsuid, uid) < 0)
        return errno;
    return 0;
}

static int restore_process_creds(void)
{
    return switch_creds(geteuid(), getegid(), process_ngroups, process_groups);
}

/* OSError(err, message): the OSError constructor picks the subclass (PermissionError...). */
static PyObject *creds_error(int err, PyObject *message)
{
    PyObject *args = message == NULL ? NULL : Py_BuildValue("(iN)", err, message);
    if (args != NULL) {
        PyErr_SetObject(PyExc_OSError, args);
        Py_DECREF(args);
    }
    return NULL;
}

/* A uid or gid from a Python int: 0 or -1 with ValueError/TypeError set. */
static int parse_id(PyObject *value, const char *what, unsigned int *out)
{
    long long id = PyLong_AsLongLong(value);
    if (id == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();
    }
    if (id < 0 || id > (long long)MAX_ID) {
        PyErr_Format(PyExc_ValueError, "%s must be between 0 and %u", what, MAX_ID);
        return -1;
    }
    *out = (unsigned int)id;
    return 0;
}

static PyObject *set_thread_creds(PyObject *module, PyObject *args)
{
    PyObject *uid_arg, *gid_arg, *groups_arg;
    unsigned int uid, gid;
    if (!PyArg_ParseTuple(args, "OOO:set_thread_creds", &uid_arg, &gid_arg, &groups_arg))
        return NULL;
    if (parse_id(uid_arg, "uid", &uid) < 0 || parse_id(gid_arg, "gid", &gid) < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(groups_arg, "groups must be a sequence of ints");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    gid_t stack[STACK_GROUPS];
    gid_t *groups = n <= STACK_GROUPS ? stack : PyMem_Malloc((size_t)n * sizeof *groups);
    if (groups == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned int g;
        if (parse_id(PySequence_Fast_GET_ITEM(seq, i), "group", &g) < 0)
            goto done;
        groups[i] = g;
    }
    int err = switch_creds(uid, gid, (size_t)n, groups);
    if (err) {
        /* Never leave a thread half switched (one user's groups with another's fsuid). */
        restore_process_creds();
        creds_error(err, PyUnicode_FromFormat("cannot switch this thread to uid %u, gid %u and %zd groups: %s",
                                              uid, gid, n, strerror(err)));
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    if (groups != stack)
        PyMem_Free(groups);
    Py_DECREF(seq);
    return result;
}

static PyObject *restore_thread_creds(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    int err = restore_process_creds();
    if (err)
        return creds_error(err, PyUnicode_FromFormat("cannot restore this thread's credentials: %s", strerror(err)));
    Py_RETURN_NONE;
}

static PyObject *thread_creds(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    unsigned int fsuid = (unsigned int)syscall(SYS_setfsuid, -1L);
    unsigned int fsgid = (unsigned int)syscall(SYS_setfsgid, -1L);
    gid_t *list;
    size_t n;
    if (read_groups(&list, &n) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    PyObject *groups = PyTuple_New((Py_ssize_t)n);
    for (size_t i = 0; groups != NULL && i < n; i++) {
        PyObject *g = PyLong_FromUnsignedLong(list[i]);
        if (g == NULL)
            Py_CLEAR(groups);
        else
            PyTuple_SET_ITEM(groups, (Py_ssize_t)i, g);
    }
    free(list);
    if (groups == NULL)
        return NULL;
    return Py_BuildValue("(kkN)", (unsigned long)fsuid, (unsigned long)fsgid, groups);
}

/* ------------------------------------------------------------------------------------------ */
/* open_beneath                                                                                */

/* Set at import by a probe; cleared if openat2 later answers ENOSYS. Touched with the GIL held. */
static int kernel_has_openat2;

static int openat2_in_use(void)
{
    const char *setting = getenv("AIF_OPENAT2");
    return kernel_has_openat2 && !(setting != NULL && strcmp(setting, "0") == 0);
}

const char *aifnative_open_beneath_mode(void)
{
    return openat2_in_use() ? "yes" : "walk";
}

static int probe_openat2(void)
{
    struct aif_open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC};
    long fd = syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof how);
    if (fd < 0)
        return 0; /* ENOSYS, or a seccomp filter's EPERM/E2BIG: walk */
    close((int)fd);
    return 1;
}

/* openat2 and its mode rule: mode must be 0 unless the call may create a file. */
static int creates(int flags)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
}

/* An fd, or -errno. */
static int open_with_openat2(int dir_fd, const char *path, int flags, unsigned int mode, int resolve)
{
    struct aif_open_how how = {
        .flags = (uint64_t)(unsigned int)(flags | O_CLOEXEC),
        .mode = creates(flags) ? mode : 0,
        .resolve = (uint64_t)resolve,
    };
    long fd = syscall(SYS_openat2, dir_fd, path, &how, sizeof how);
    return fd < 0 ? -errno : (int)fd;
}

/* The next component of *p into name, skipping slashes and "." components: 1, 0 at the end of
 * the path, or -ENAMETOOLONG. */
static int next_component(const char **p, char name[NAME_MAX + 1])
{
    for (;;) {
        const char *start = *p;
        while (*start == '/')
            start++;
        const char *end = start;
        while (*end != '\0' && *end != '/')
            end++;
        *p = end;
        size_t len = (size_t)(end - start);
        if (len == 0)
            return 0;
        if (len == 1 && start[0] == '.')
            continue;
        if (len > NAME_MAX)
            return -ENAMETOOLONG;
        memcpy(name, start, len);
        name[len] = '\0';
        return 1;
    }
}

static int is_symlink_at(int dir_fd, const char *name)
{
    struct stat st;
    return fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
}

/* 0 when fd is on device dev, else -EXDEV (or -errno of the stat). */
static int check_same_device(int fd, dev_t dev)
{
    struct stat st;
    if (fstatat(fd, "", &st, AT_EMPTY_PATH) < 0)
        return -errno;
    return st.st_dev == dev ? 0 : -EXDEV;
}

/* The last component, opened: closed and refused (-errno) when O_PATH without O_NOFOLLOW opened
 * a symlink itself (a symlink the caller did not ask for), or, under RESOLVE_NO_XDEV, when it
 * lies on another device. */
static int check_opened(int fd, int flags, int resolve, dev_t dev)
{
    int err = 0;
    if ((flags & (O_PATH | O_NOFOLLOW)) == O_PATH) {
        struct stat st;
        if (fstatat(fd, "", &st, AT_EMPTY_PATH) < 0)
            err = -errno;
        else if (S_ISLNK(st.st_mode))
            err = -ELOOP;
    }
    if (err == 0 && resolve & RESOLVE_NO_XDEV)
        err = check_same_device(fd, dev);
    if (err < 0) {
        close(fd);
        return err;
    }
    return fd;
}

/* The O_NOFOLLOW walk; an fd, or -errno. */
static int open_by_walk(int dir_fd, const char *path, int flags, unsigned int mode, int resolve)
{
    char name[NAME_MAX + 1], next[NAME_MAX + 1];
    const char *p = path;
    int found;
    if (path[0] == '\0')
        return -ENOENT;
    if (path[0] == '/')
        return -EXDEV;
    /* Lexical checks first, so that a refused path opens nothing. */
    while ((found = next_component(&p, name)) > 0)
        if (strcmp(name, "..") == 0)
            return -EXDEV;
    if (found < 0)
        return found;

    dev_t dev = 0;
    if (resolve & RESOLVE_NO_XDEV) {
        struct stat st;
        if (fstatat(dir_fd, "", &st, AT_EMPTY_PATH) < 0)
            return -errno;
        dev = st.st_dev;
    }
    int last_flags = flags | O_NOFOLLOW | O_CLOEXEC;
    const char *last_slash = strrchr(path, '/');
    const char *last = last_slash == NULL ? path : last_slash + 1;
    if (*last == '\0' || strcmp(last, ".") == 0)
        last_flags |= O_DIRECTORY; /* "x/" and "x/." name a directory, as the kernel reads them */

    p = path;
    if (next_component(&p, name) == 0)
        strcpy(name, "."); /* the path names the directory itself ("." or "./") */
    int cur = dir_fd;
    while (next_component(&p, next) > 0) {
        int fd = openat(cur, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int err = fd < 0 ? errno : 0;
        if ((err == ENOTDIR || err == ELOOP) && is_symlink_at(cur, name))
            err = ELOOP;
        if (cur != dir_fd)
            close(cur);
        if (fd < 0)
            return -err;
        cur = fd;
        if (resolve & RESOLVE_NO_XDEV && (err = check_same_device(cur, dev)) < 0) {
            close(cur);
            return err;
        }
        memcpy(name, next, sizeof name);
    }

    int result = openat(cur, name, last_flags, (mode_t)mode);
    if (result < 0) {
        int err = errno;
        result = err == ENOTDIR && is_symlink_at(cur, name) ? -ELOOP : -err;
    } else {
        result = check_opened(result, flags, resolve, dev);
    }
    if (cur != dir_fd)
        close(cur);
    return result;
}

static PyObject *open_beneath(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"dir_fd", "path", "flags", "mode", "resolve", NULL};
    int dir_fd, flags, mode = 0666, resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    PyObject *path_arg, *path_bytes;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iOi|ii:open_beneath", kwlist, &dir_fd, &path_arg, &flags, &mode,
                                     &resolve))
        return NULL;
    if (mode < 0 || mode > 07777) {
        PyErr_SetString(PyExc_ValueError, "mode must be between 0 and 0o7777");
        return NULL;
    }
    if (resolve & ~RESOLVE_KNOWN) {
        PyErr_SetString(PyExc_ValueError, "resolve takes RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS, "
                                          "RESOLVE_NO_MAGICLINKS and RESOLVE_NO_XDEV only");
        return NULL;
    }
    if (!PyUnicode_FSConverter(path_arg, &path_bytes))
        return NULL;
    const char *path = PyBytes_AS_STRING(path_bytes);
    int with_openat2 = openat2_in_use(), lost_openat2 = 0, fd;
    Py_BEGIN_ALLOW_THREADS
    fd = with_openat2 ? open_with_openat2(dir_fd, path, flags, (unsigned int)mode, resolve) : -ENOSYS;
    if (fd == -ENOSYS) {
        lost_openat2 = with_openat2;
        fd = open_by_walk(dir_fd, path, flags, (unsigned int)mode, resolve);
    }
    Py_END_ALLOW_THREADS
    Py_DECREF(path_bytes);
    if (lost_openat2)
        kernel_has_openat2 = 0;
    if (fd < 0) {
        errno = -fd;
        return PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path_arg);
    }
    return PyLong_FromLong(fd);
}

/* ------------------------------------------------------------------------------------------ */

static PyMethodDef posixcreds_methods[] = {
    {"set_thread_creds", set_thread_creds, METH_VARARGS,
     "set_thread_creds(uid, gid, groups, /): this thread's supplementary groups, fsgid and fsuid."},
    {"restore_thread_creds", restore_thread_creds, METH_NOARGS,
     "restore_thread_creds(): this thread back to the process's ids and groups (as at import)."},
    {"thread_creds", thread_creds, METH_NOARGS, "thread_creds() -> (fsuid, fsgid, groups) of this thread."},
    {"open_beneath", (PyCFunction)(void (*)(void))open_beneath, METH_VARARGS | METH_KEYWORDS,
     "open_beneath(dir_fd, path, flags, mode=0o666, resolve=RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS) -> fd: "
     "openat2, or a walk that refuses every symlink."},
    {NULL, NULL, 0, NULL},
};

int aifnative_add_posixcreds(PyObject *module)
{
    if (process_groups == NULL && read_groups(&process_groups, &process_ngroups) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    kernel_has_openat2 = probe_openat2();
    if (PyModule_AddIntConstant(module, "RESOLVE_NO_XDEV", RESOLVE_NO_XDEV) < 0 ||
        PyModule_AddIntConstant(module, "RESOLVE_NO_MAGICLINKS", RESOLVE_NO_MAGICLINKS) < 0 ||
        PyModule_AddIntConstant(module, "RESOLVE_NO_SYMLINKS", RESOLVE_NO_SYMLINKS) < 0 ||
        PyModule_AddIntConstant(module, "RESOLVE_BENEATH", RESOLVE_BENEATH) < 0)
        return -1;
    return PyModule_AddFunctions(module, posixcreds_methods);
}
