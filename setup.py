"""Build script: the pure-Python package comes from pyproject.toml; this adds
the native core, one extension module compiled from every C file in
_multiprocess/ (one file per mechanism, see _multiprocess/module.c)."""
import glob

from setuptools import Extension, setup

native_core = Extension(
    "_multiprocess",
    sources=sorted(glob.glob("_multiprocess/*.c")),
    depends=sorted(glob.glob("_multiprocess/*.h")),
    # Hidden by default: only PyInit__multiprocess (PyMODINIT_FUNC marks it)
    # leaves the module, so calls between the C files are direct rather than
    # through the PLT (syncwrap.c takes a SemLock through semlock.c on every
    # Value access).
    extra_compile_args=["-Wall", "-Wextra", "-std=gnu11",
                        "-fvisibility=hidden"],
    libraries=["rt", "pthread"],
)

setup(ext_modules=[native_core])
