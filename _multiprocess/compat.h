/*
 * compat.h -- every difference between the CPython versions the core builds
 * for (3.10 to 3.13, and free-threaded builds), in one place.
 *
 * The core is written against the newest public C API it uses.  Where an
 * older version lacks a function, a shim of the same name is defined here,
 * guarded by the version that lacks it, so the .c files stay free of
 * version tests: when 3.10 is dropped, its section is deleted and nothing
 * else changes.  Included by multiprocess.h, after Python.h.
 */
#ifndef MULTIPROCESS_COMPAT_H
#define MULTIPROCESS_COMPAT_H

/* ------------------------------------------------------------------------
 * 3.10: PyType_GetModuleByDef and PyFloat_Pack8/Unpack8 arrived in 3.11.
 */
#if PY_VERSION_HEX < 0x030B0000

/* The module created from `def` that `type` or one of its bases belongs
 * to (borrowed), as 3.11's function finds it: along the MRO, among heap
 * types.  TypeError when there is none. */
static inline PyObject *
PyType_GetModuleByDef(PyTypeObject *type, PyModuleDef *def)
{
    PyObject *mro = type->tp_mro;
    Py_ssize_t n = mro != NULL ? PyTuple_GET_SIZE(mro) : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTypeObject *t = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (!PyType_HasFeature(t, Py_TPFLAGS_HEAPTYPE)) {
            continue;
        }
        /* Read the field, as 3.11 does: 3.10's PyType_GetModule raises
         * for a heap type made without a module, and clearing that would
         * also drop an exception the caller (a dealloc) has pending. */
        PyObject *module = ((PyHeapTypeObject *)t)->ht_module;
        if (module != NULL && PyModule_GetDef(module) == def) {
            return module;
        }
    }
    PyErr_Format(PyExc_TypeError,
                 "PyType_GetModuleByDef: no superclass of '%s' has "
                 "the given module", type->tp_name);
    return NULL;
}

/* 3.10 has them under private names, with unsigned buffers; the same
 * IEEE 754 binary64 bytes. */
static inline int
PyFloat_Pack8(double x, char *p, int le)
{
    return _PyFloat_Pack8(x, (unsigned char *)p, le);
}

static inline double
PyFloat_Unpack8(const char *p, int le)
{
    return _PyFloat_Unpack8((const unsigned char *)p, le);
}

#endif /* < 3.11 */

/* ------------------------------------------------------------------------
 * The value of an int that fits in one digit, which is most ints, without
 * a call (1, value in *out), or 0 for any other int.  3.12 changed the
 * layout of ints and gave this a public, unstable API; before 3.12 the
 * layout is read directly (sign and digit count in ob_size, the digits in
 * ob_digit).
 */
#if PY_VERSION_HEX >= 0x030C0000
static inline int
mp_long_compact(PyObject *obj, long long *out)
{
    if (!PyUnstable_Long_IsCompact((PyLongObject *)obj)) {
        return 0;
    }
    *out = (long long)PyUnstable_Long_CompactValue((PyLongObject *)obj);
    return 1;
}
#else
static inline int
mp_long_compact(PyObject *obj, long long *out)
{
    Py_ssize_t size = Py_SIZE(obj);
    if (size == 0) {
        *out = 0;
        return 1;
    }
    if (size != 1 && size != -1) {
        return 0;
    }
    *out = (long long)size * (long long)((PyLongObject *)obj)->ob_digit[0];
    return 1;
}
#endif

/* ------------------------------------------------------------------------
 * Free-threaded builds (Py_GIL_DISABLED: 3.13t and later).  Not built or
 * tested here; what the core does there by design:
 *
 * - MP_OWNS_LIST_STORAGE is 0: a list's storage (ob_item/allocated) is
 *   never written directly, since it is shared with lock-free readers
 *   and freed through the interpreter's own delayed reclamation; lists
 *   grow through PyList_Append only.
 * - The thread list of an interpreter is never walked: without the GIL
 *   it changes under the walker.
 * - The module does not declare Py_MOD_GIL_NOT_USED (module.c declares
 *   Py_MOD_GIL_USED), so importing it turns the GIL back on: its types
 *   keep state that the GIL serialises.
 */
#ifdef Py_GIL_DISABLED
#define MP_OWNS_LIST_STORAGE 0
#else
#define MP_OWNS_LIST_STORAGE 1
#endif

#endif /* MULTIPROCESS_COMPAT_H */
