"""Placeholders for submodules of the target package that do not exist yet.

The suite imports connection, dummy, heap, managers, pool and queues at its
top, so while one of them is missing no test of the suite can even load.
Each missing one is replaced by a placeholder module whose every attribute is
a class that cannot be instantiated, so the suite loads and only the tests
that use the missing module fail.  The runner prints which modules were
stubbed; once a module exists its placeholder is never used.
"""
import importlib
import sys
import types

REQUIRED = ("connection", "dummy", "heap", "managers", "pool", "queues")


class _MissingMeta(type):
    # class-level calls made while the suite loads (Manager.register(...))
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


class Missing(metaclass=_MissingMeta):
    """Stands for anything a missing module would have provided."""
    _module = "?"

    def __init__(self, *args, **kwargs):
        raise NotImplementedError(f"{self._module} does not exist yet (conformance stub)")


def _placeholder(fullname):
    mod = types.ModuleType(fullname, "conformance placeholder for a missing module")
    mod.__mpconf_stub__ = True
    cache = {}

    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name not in cache:
            cache[name] = type(name, (Missing,), {"_module": fullname})
        return cache[name]

    mod.__getattr__ = __getattr__
    return mod


def install(package):
    """Stub every REQUIRED submodule of `package` that fails to import;
    returns the names stubbed."""
    stubbed = []
    pkg = importlib.import_module(package)
    for sub in REQUIRED:
        fullname = f"{package}.{sub}"
        try:
            importlib.import_module(fullname)
        except ImportError as exc:
            if getattr(exc, "name", None) not in (fullname, None):
                # the module exists but something it imports is missing:
                # that is its own bug, stub it all the same so the rest runs
                pass
            sys.modules[fullname] = _placeholder(fullname)
            setattr(pkg, sub, sys.modules[fullname])
            stubbed.append(sub)
    return stubbed
