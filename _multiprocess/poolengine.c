/*
 * poolengine.c -- placeholder; the owner of this mechanism replaces it.
 */
#include "multiprocess.h"

int
mp_poolengine_exec(PyObject *module)
{
    (void)module;
    return 0;
}
