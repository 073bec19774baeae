/*
 * shm.c -- POSIX shared memory names: shm_open() and shm_unlink().
 *
 * multiprocess.shared_memory sizes and maps the returned descriptor itself
 * (os.ftruncate, mmap); this file only turns a name into a descriptor and
 * removes a name, the two steps Python's os module cannot do.  The resource
 * tracker calls shm_unlink() to clean up after programs that died.
 */
#include "multiprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

/* Raise the errno-specific OSError subclass, naming the segment. */
static PyObject *
shm_error(int err, PyObject *name)
{
    errno = err;
    return PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, name);
}

/* The name as a C string.  One with an embedded NUL is refused rather than
   cut short there, which would name another segment (3.13's _posixshmem
   refuses it too; older ones cut it). */
static const char *
shm_path(PyObject *path)
{
    Py_ssize_t size;
    const char *cpath = PyUnicode_AsUTF8AndSize(path, &size);
    if (cpath == NULL) {
        return NULL;
    }
    if ((size_t)size != strlen(cpath)) {
        PyErr_SetString(PyExc_ValueError, "embedded null character");
        return NULL;
    }
    return cpath;
}

PyDoc_STRVAR(shm_open_doc,
"shm_open(path, flags, mode=0o777)\n--\n\n"
"Open (or create, with os.O_CREAT) the POSIX shared memory object `path`\n"
"and return its file descriptor.  The descriptor is not inheritable.");

static PyObject *
mp_shm_open(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"path", "flags", "mode", NULL};
    PyObject *path;
    int flags, fd, err;
    int mode = 0777;
    (void)module;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Ui|i:shm_open", kwlist,
                                     &path, &flags, &mode)) {
        return NULL;
    }
    const char *cpath = shm_path(path);
    if (cpath == NULL) {
        return NULL;
    }
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        fd = shm_open(cpath, flags | O_CLOEXEC, (mode_t)mode);
        err = errno;
        Py_END_ALLOW_THREADS
        if (fd >= 0) {
            return PyLong_FromLong(fd);
        }
        if (err != EINTR) {
            return shm_error(err, path);
        }
        if (PyErr_CheckSignals() < 0) {
            return NULL;
        }
    }
}

PyDoc_STRVAR(shm_unlink_doc,
"shm_unlink(path)\n--\n\n"
"Remove the name of the POSIX shared memory object `path`.  Mappings that\n"
"are still open stay valid; the memory is freed when the last one closes.");

static PyObject *
mp_shm_unlink(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"path", NULL};
    PyObject *path;
    int rc, err;
    (void)module;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "U:shm_unlink", kwlist,
                                     &path)) {
        return NULL;
    }
    const char *cpath = shm_path(path);
    if (cpath == NULL) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = shm_unlink(cpath);
    err = errno;
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        return shm_error(err, path);
    }
    Py_RETURN_NONE;
}

static PyMethodDef shm_methods[] = {
    {"shm_open", (PyCFunction)(void (*)(void))mp_shm_open,
     METH_VARARGS | METH_KEYWORDS, shm_open_doc},
    {"shm_unlink", (PyCFunction)(void (*)(void))mp_shm_unlink,
     METH_VARARGS | METH_KEYWORDS, shm_unlink_doc},
    {NULL, NULL, 0, NULL},
};

int
mp_shm_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, shm_methods);
}
