/* The staging engine's batch copy of small files, in C: aif_gateway._native.copy_small_files
 * (native/stagecopy.c).
 *
 * Include after <Python.h>.
 */
#ifndef AIF_STAGECOPY_H
#define AIF_STAGECOPY_H

/* Add copy_small_files to the module; 0, or -1 with an exception set. */
int aifnative_add_stagecopy(PyObject *module);

#endif
