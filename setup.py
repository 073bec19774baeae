"""Build script: the pure-Python package comes from pyproject.toml; this adds
the native core, one extension module compiled from every C file in
_multiprocess/ (one file per mechanism, see _multiprocess/module.c)."""
import glob

from setuptools import Extension, setup

native_core = Extension(
    "_multiprocess",
    sources=sorted(glob.glob("_multiprocess/*.c")),
    depends=sorted(glob.glob("_multiprocess/*.h")),
    extra_compile_args=["-Wall", "-Wextra", "-std=gnu11"],
    libraries=["rt", "pthread"],
)

setup(ext_modules=[native_core])
