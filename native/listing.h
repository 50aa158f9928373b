/* The listing's batch stat, in C: aif_gateway._native.stat_entries (native/listing.c).
 *
 * Include after <Python.h>.
 */
#ifndef AIF_LISTING_H
#define AIF_LISTING_H

/* Add stat_entries to the module; 0, or -1 with an exception set. */
int aifnative_add_listing(PyObject *module);

#endif
