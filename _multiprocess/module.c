/*
 * module.c -- initialisation of the `_multiprocess` extension module.
 *
 * Multi-phase init: one Py_mod_exec slot per mechanism, so each C file
 * registers its own types and functions.  The module state (multiprocess.h)
 * holds the heap types; it is visited and cleared here, as a whole.
 */
#include "multiprocess.h"

#include <errno.h>

static struct PyModuleDef mp_module;

mp_state *
mp_state_from_type(PyTypeObject *tp)
{
    PyObject *module = PyType_GetModuleByDef(tp, &mp_module);
    if (module == NULL) {
        return NULL;
    }
    return mp_get_state(module);
}

PyObject *
mp_raise_errno(int err)
{
    errno = err;
    return PyErr_SetFromErrno(PyExc_OSError);
}

#define MP_STATE_SLOTS (sizeof(mp_state) / sizeof(PyObject *))

static int
mp_traverse(PyObject *module, visitproc visit, void *arg)
{
    PyObject **slot = (PyObject **)mp_get_state(module);
    for (size_t i = 0; i < MP_STATE_SLOTS; i++) {
        Py_VISIT(slot[i]);
    }
    return 0;
}

static int
mp_clear(PyObject *module)
{
    PyObject **slot = (PyObject **)mp_get_state(module);
    for (size_t i = 0; i < MP_STATE_SLOTS; i++) {
        Py_CLEAR(slot[i]);
    }
    return 0;
}

static void
mp_free(void *module)
{
    (void)mp_clear((PyObject *)module);
}

static PyModuleDef_Slot mp_slots[] = {
    {Py_mod_exec, (void *)mp_semlock_exec},
    {Py_mod_exec, (void *)mp_codec_exec},
    {Py_mod_exec, (void *)mp_spinwait_exec},
    {Py_mod_exec, (void *)mp_frameio_exec},
    {Py_mod_exec, (void *)mp_endpoint_exec},
    {Py_mod_exec, (void *)mp_arena_exec},
    {Py_mod_exec, (void *)mp_syncwrap_exec},
    {Py_mod_exec, (void *)mp_shm_exec},
    {Py_mod_exec, (void *)mp_poolengine_exec},
    {Py_mod_exec, (void *)mp_plainpickle_exec},
    {Py_mod_exec, (void *)mp_plainunpickle_exec},
#ifdef Py_mod_gil
    /* True: the types' state is serialised by the GIL, so a free-threaded
     * interpreter turns it back on when importing this (compat.h). */
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

PyDoc_STRVAR(mp_doc,
"Native core of multiprocess: semaphores, connection I/O, shared memory\n"
"arenas and the pool engine.  Use the `multiprocess` package instead.");

static struct PyModuleDef mp_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_multiprocess",
    .m_doc = mp_doc,
    .m_size = sizeof(mp_state),
    .m_slots = mp_slots,
    .m_traverse = mp_traverse,
    .m_clear = mp_clear,
    .m_free = mp_free,
};

PyMODINIT_FUNC
PyInit__multiprocess(void)
{
    return PyModuleDef_Init(&mp_module);
}
