/* Per-thread POSIX credentials and opens beneath a directory (native/posixcreds.c):
 * set_thread_creds, restore_thread_creds, thread_creds, open_beneath and the RESOLVE_* constants.
 *
 * Include after <Python.h>.
 */
#ifndef AIF_POSIXCREDS_H
#define AIF_POSIXCREDS_H

/* Add the functions and constants to the module, capture the process's supplementary groups and
 * probe for openat2; 0, or -1 with an exception set. */
int aifnative_add_posixcreds(PyObject *module);

/* How open_beneath resolves paths now: "yes" (openat2), or "walk" (the kernel lacks openat2, or
 * AIF_OPENAT2=0). Call with the GIL held. */
const char *aifnative_open_beneath_mode(void);

#endif
