"""Bootstrap of children that begin life as a fresh interpreter.

Used by the 'spawn' start method (the child is a new ``python -c ...``) and
by 'forkserver' (the child is forked from a server that never saw the
parent's objects).  Either way the child has to be told how the parent looked
(``sys.path``, working directory, main module, authkey, logging ...) before
it can unpickle the Process object it is meant to run.

The parent writes two frames on a pipe: the preparation data, then the
process object, each pickled with ``reduction.ForkingPickler`` (dill reach,
so lambdas and closures travel).  Each frame is an 8-byte big-endian length
followed by the pickle.  The child reads both, applies the first with
:func:`prepare` and only then unpickles the second, because the process
object may refer to names of the parent's ``__main__``.

Main-module policy.  A main script with a real file is re-run in the child
under the name ``__mp_main__`` and aliased as ``__main__``, so functions
defined at its top level resolve by name.  A main module without a file
(``python -c``, ``python -`` reading stdin, an interactive session) is left
alone: dill ships its functions by value instead.

Start-up cost.  Compiling the main script is a large share of a spawned
child's start (4 ms for a 500-line script, against ~40 ms for the whole
interpreter start), and every child would compile the same file again.  So
a spawning parent compiles it once and sends the marshalled code with the
preparation data, stamped with the interpreter version, optimisation level
and the file's size and modification time; the child runs that code if the
stamp still matches its own view of the file, and otherwise reads and
compiles the file itself, as before (runpy).
"""

import io
import marshal
import os
import struct
import sys

from . import process
from . import util

__all__ = ['_main', 'freeze_support', 'set_executable', 'get_executable',
           'get_preparation_data', 'get_command_line', 'import_main_path']

# Windows-only notions; kept so code written for the standard library finds
# them.  This package targets Linux.
WINEXE = False
WINSERVICE = False

# argv[1] of a spawned child (the standard library's marker, kept so frozen
# programs calling freeze_support() recognise our children too).
_CHILD_FLAG = '--multiprocessing-fork'

_FRAME_HEADER = struct.Struct('>Q')

# Main modules replaced by prepare(); kept alive so objects that still point
# into their namespaces keep working.
old_main_modules = []


# ---------------------------------------------------------------------------
# which interpreter to launch

_python_exe = None


def set_executable(exe):
    """Choose the interpreter that spawned children (and helper servers) run."""
    global _python_exe
    _python_exe = None if exe is None else os.fsencode(exe)


def get_executable():
    """Return the interpreter path set by :func:`set_executable` (bytes)."""
    return _python_exe


set_executable(sys.executable)


# ---------------------------------------------------------------------------
# command line of a spawned child

def is_forking(argv):
    """True when ``argv`` is the command line of a spawned child."""
    return len(argv) > 1 and argv[1] == _CHILD_FLAG


def freeze_support():
    """In a frozen executable acting as a spawned child, run the child and exit.

    Does nothing in an ordinary process, so calling it first thing under
    ``if __name__ == '__main__':`` is always safe.
    """
    if not is_forking(sys.argv):
        return
    options = {}
    for item in sys.argv[2:]:
        key, _, text = item.partition('=')
        options[key] = None if text == 'None' else int(text)
    spawn_main(**options)
    sys.exit()


def _reach_ourselves():
    """Code that lets a child interpreter find this package, or ''.

    Children get the parent's interpreter flags.  Under -S, -E or -I the
    site-packages or PYTHONPATH entries that hold us (and dill, and the
    native core) are not on the child's path: a stdlib module is always
    found, we would not be.  So name their directories explicitly."""
    flags = sys.flags
    if not (flags.no_site or flags.ignore_environment or flags.isolated):
        return ''
    import importlib.util
    dirs = []
    for name in (__package__, '_multiprocess', 'dill'):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.origin:
            continue
        where = os.path.dirname(spec.origin)
        if spec.submodule_search_locations:     # a package: its parent
            where = os.path.dirname(where)
        if where not in dirs:
            dirs.append(where)
    return 'import sys; sys.path[:0] = %r; ' % (dirs,)


def get_command_line(**kwds):
    """Return the argv that starts a child running :func:`spawn_main`."""
    settings = ['%s=%r' % pair for pair in kwds.items()]
    if getattr(sys, 'frozen', False):
        # the frozen program itself routes to freeze_support()
        return [sys.executable, _CHILD_FLAG] + settings
    program = _reach_ourselves() + (
        'from %s import spawn_main; spawn_main(%s)'
        % (__name__, ', '.join(settings)))
    return ([get_executable()] + util._args_from_interpreter_flags() +
            ['-c', program, _CHILD_FLAG])


def _run_helper(program, keep_fds):
    """Start a helper interpreter (fork server, resource tracker) running
    ``program`` with only ``keep_fds`` (and stdio) open; return its pid."""
    exe = get_executable()
    argv = [exe] + util._args_from_interpreter_flags() + [
        '-c', _reach_ourselves() + program]
    return util.spawnv_passfds(exe, argv, keep_fds)


# ---------------------------------------------------------------------------
# the two frames on the pipe

def _read_exactly(stream, size):
    data = stream.read(size)
    if data is None or len(data) != size:
        raise EOFError('the parent closed the pipe before sending the '
                       'process data')
    return data


def _read_frame(stream):
    (size,) = _FRAME_HEADER.unpack(_read_exactly(stream, _FRAME_HEADER.size))
    return _read_exactly(stream, size)


def serialize_for_child(process_obj, spawning_popen, main_code=False):
    """Pickle the preparation data and ``process_obj`` for a fresh child.

    Returns the bytes to write on the child's data pipe.  ``spawning_popen``
    is registered as the spawning Popen while pickling, which is what lets
    fds, authkeys and locks reduce themselves for the child.  With
    ``main_code``, the compiled main script goes along (a fresh interpreter
    would otherwise compile it again; a forked server child has it already).
    """
    from . import context
    prep = get_preparation_data(process_obj._name)
    if main_code and 'init_main_from_path' in prep:
        compiled = _compiled_main(prep['init_main_from_path'])
        if compiled is not None:
            prep['main_code'] = compiled
    pickler = context.reduction.ForkingPickler
    context.set_spawning_popen(spawning_popen)
    try:
        prep_blob = pickler.dumps(prep)
        obj_blob = pickler.dumps(process_obj)
    finally:
        context.set_spawning_popen(None)
    header = _FRAME_HEADER.pack(len(prep_blob))
    middle = _FRAME_HEADER.pack(len(obj_blob))
    return b''.join((header, bytes(prep_blob), middle, bytes(obj_blob)))


def _unpickle(blob):
    # ForkingPickler.loads is a plain unpickler: dill is imported only when
    # the payload itself refers to it (a lambda, a __main__ function ...),
    # so a child with a named target starts without dill.
    from . import context
    return context.reduction.ForkingPickler.loads(blob)


# ---------------------------------------------------------------------------
# child side

# The parent's resource tracker pipe, handed to a spawned child: adopted by
# the tracker at once if its module is loaded, else when it is imported
# (resource_tracker reads it; this module stays below that one).
_inherited_tracker_fd = None


def _adopt_tracker_fd(fd):
    global _inherited_tracker_fd
    tracker = sys.modules.get(__package__ + '.resource_tracker')
    if tracker is not None:
        tracker._resource_tracker._fd = fd
    else:
        _inherited_tracker_fd = fd


def spawn_main(pipe_handle, parent_pid=None, tracker_fd=None):
    """Entry point of a spawned child: read its job from ``pipe_handle``."""
    if not is_forking(sys.argv):
        raise RuntimeError('spawn_main() runs only in a spawned child')
    if tracker_fd is not None:
        _adopt_tracker_fd(tracker_fd)
    # The parent keeps the write end of our data pipe open for as long as it
    # lives: a duplicate of the read end is the child's parent sentinel.
    parent_sentinel = os.dup(pipe_handle)
    sys.exit(_main(pipe_handle, parent_sentinel))


def _main(fd, parent_sentinel):
    """Read preparation data and process object from ``fd``; run the process.

    Returns the exit code of the process object's bootstrap.
    """
    me = process.current_process()
    with open(fd, 'rb', closefd=True) as source:
        me._inheriting = True
        try:
            prep_blob = _read_frame(source)
            obj_blob = _read_frame(source)
            prepare(_unpickle(prep_blob))
            job = _unpickle(obj_blob)
        finally:
            del me._inheriting
    return job._bootstrap(parent_sentinel)


def _check_not_importing_main():
    # A child re-running its parent's main script as __mp_main__ reaches
    # here when that script starts processes at import time.
    if not getattr(process.current_process(), '_inheriting', False):
        return
    raise RuntimeError(
        "A new process was started while this process was still being "
        "bootstrapped.\n\n"
        "With the 'spawn' and 'forkserver' start methods every child re-imports "
        "the main module of its parent (as __mp_main__) before it runs its "
        "target.  Here that import itself tried to start a process: the main "
        "module starts processes at import time instead of only when run as "
        "a program.\n\n"
        "Put the code that starts processes under a main guard:\n\n"
        "    if __name__ == '__main__':\n"
        "        freeze_support()   # only needed for frozen executables\n"
        "        ...\n\n"
        "See 'Safe importing of main module' in the multiprocessing "
        "documentation, or use the 'fork' start method.")


def _main_script_path(main_module):
    """Absolute path of the main module's script, or None if it has no file."""
    path = getattr(main_module, '__file__', None)
    if not path:
        return None
    if path.startswith('<') and path.endswith('>'):
        # '<stdin>', '<string>' ...: there is nothing to re-run
        return None
    if not os.path.isabs(path) and process.ORIGINAL_DIR is not None:
        path = os.path.join(process.ORIGINAL_DIR, path)
    path = os.path.normpath(path)
    if not os.path.exists(path):
        return None
    return path


def get_preparation_data(name):
    """Return what a fresh child needs to look like its parent.

    Raises the bootstrapping RuntimeError when called while this process is
    itself still unpickling its own job (an unguarded main script).
    """
    _check_not_importing_main()
    from .context import _default_context
    get_start_method = _default_context.get_start_method
    me = process.current_process()
    path = list(sys.path)
    if '' in path:
        path[path.index('')] = process.ORIGINAL_DIR
    data = {
        'name': name,
        'authkey': me.authkey,
        'log_to_stderr': util._log_to_stderr,
        'sys_path': path,
        'sys_argv': sys.argv,
        'orig_dir': process.ORIGINAL_DIR,
        'dir': os.getcwd(),
        'start_method': get_start_method(),
    }
    if util._logger is not None:
        data['log_level'] = util._logger.getEffectiveLevel()
    main_module = sys.modules['__main__']
    spec_name = getattr(getattr(main_module, '__spec__', None), 'name', None)
    if spec_name is not None:
        data['init_main_from_name'] = spec_name
    else:
        script = _main_script_path(main_module)
        if script is not None:
            data['init_main_from_path'] = script
        else:
            imported = _modules_bound_in(main_module)
            if imported:
                data['main_module_imports'] = imported
    return data


def _modules_bound_in(main_module):
    """{global name: module name} for the modules a file-less main imported.

    A function of ``python -c``, stdin or an interactive session reaches a
    fresh child by value (dill), but its global names are looked up in the
    child's own ``__main__``, which never ran the parent's ``import``
    statements.  Replaying just those imports makes the usual
    ``import math`` ... ``lambda x: math.sqrt(x)`` work there too.
    """
    bound = {}
    for name, value in list(vars(main_module).items()):
        if name.startswith('__') or type(value).__name__ != 'module':
            continue
        modname = getattr(value, '__name__', None)
        if (isinstance(modname, str) and modname != '__main__' and
                sys.modules.get(modname) is value):
            bound[name] = modname
    return bound


def _replay_main_imports(bound):
    import importlib
    main_module = sys.modules['__main__']
    for name, modname in bound.items():
        if hasattr(main_module, name):
            continue
        try:
            setattr(main_module, name, importlib.import_module(modname))
        except Exception:
            pass        # missing here: the name stays unbound, as before


def _set_sys(attr):
    return lambda value: setattr(sys, attr, value)


def _set_start_method(method):
    from .context import _default_context
    _default_context.set_start_method(method, force=True)


def _set_log_level(level):
    util.get_logger().setLevel(level)


def _set_original_dir(path):
    process.ORIGINAL_DIR = path


# preparation key -> how a child applies it, in the order applied (the main
# module comes last, separately: re-running it may depend on all of these).
_APPLY = {
    'name': lambda value: setattr(process.current_process(), 'name', value),
    'authkey': lambda value: setattr(process.current_process(), 'authkey',
                                     value),
    'log_to_stderr': lambda wanted: wanted and util.log_to_stderr(),
    'log_level': _set_log_level,
    'sys_path': _set_sys('path'),
    'sys_argv': _set_sys('argv'),
    'dir': os.chdir,
    'orig_dir': _set_original_dir,
    'start_method': _set_start_method,
}


def prepare(data):
    """Make the current (child) process match the parent described by data."""
    for key, apply in _APPLY.items():
        if key in data:
            apply(data[key])
    by_name = data.get('init_main_from_name')
    if by_name is not None:
        _fixup_main_from_name(by_name)
    elif data.get('init_main_from_path') is not None:
        _fixup_main_from_path(data['init_main_from_path'],
                              data.get('main_code'))
    elif data.get('main_module_imports'):
        _replay_main_imports(data['main_module_imports'])


# ---------------------------------------------------------------------------
# re-running the parent's main module as __mp_main__

def _install_main(namespace):
    import types
    replacement = types.ModuleType('__mp_main__')
    replacement.__dict__.update(namespace)
    old_main_modules.append(sys.modules['__main__'])
    sys.modules['__main__'] = sys.modules['__mp_main__'] = replacement
    _repoint_dill(replacement)


def _repoint_dill(main_module):
    # dill binds the __main__ it finds when first imported, and resolves the
    # globals of every __main__ function it loads (or sends) through that
    # module.  A forkserver imports dill while idle, before its children
    # re-run the script (always, with set_forkserver_preload([]) or a main
    # script that failed in the server), so without this a child's
    # __main__ functions would look up their globals in the server's
    # `python -c` module: NameError on the script's imports.
    for name in ('dill._dill', 'dill.session'):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, '_main_module'):
            module._main_module = main_module


def _fixup_main_from_name(mod_name):
    # Packages' __main__ modules run their "main only" code unguarded by
    # design, so they are never re-run.
    if mod_name == '__main__' or mod_name.endswith('.__main__'):
        return
    current = sys.modules['__main__']
    if getattr(getattr(current, '__spec__', None), 'name', None) == mod_name:
        return      # already there (e.g. a forkserver child)
    import runpy
    _install_main(runpy.run_module(mod_name, run_name='__mp_main__',
                                   alter_sys=True))


def _fixup_main_from_path(main_path, shipped=None):
    # IPython's historical launcher script has no __name__ guard.
    stem = os.path.splitext(os.path.basename(main_path))[0]
    if stem == 'ipython':
        return
    if getattr(sys.modules['__main__'], '__file__', None) == main_path:
        return      # already there (e.g. a forkserver child)
    code = _usable_main_code(main_path, shipped)
    if code is not None:
        _run_main_code(main_path, code)
        return
    import runpy
    _install_main(runpy.run_path(main_path, run_name='__mp_main__'))


# ---------------------------------------------------------------------------
# the main script compiled once, in the parent

# path -> (stamp, marshalled code), or (stamp, None) for a file that is not
# plain source (a .pyc, a zip archive ...: runpy knows those).
_compiled_mains = {}

# Larger code is compiled by the child: the whole payload must fit in the
# data pipe for start() not to wait for the child to drain it.
_MAIN_CODE_MAX = 512 * 1024


def _main_stamp(path):
    """What must not have changed for compiled code of path to be reused."""
    info = os.stat(path)
    return (sys.hexversion, sys.flags.optimize, info.st_mtime_ns,
            info.st_size)


def _compiled_main(path):
    """(stamp, marshalled code) of the script at path compiled as runpy
    compiles it, or None when the child had better do it itself."""
    try:
        stamp = _main_stamp(path)
    except OSError:
        return None
    known = _compiled_mains.get(path)
    if known is None or known[0] != stamp:
        try:
            with io.open_code(path) as source:
                text = source.read()
            blob = marshal.dumps(compile(text, path, 'exec',
                                         dont_inherit=True))
        except Exception:
            blob = None     # the child's runpy will say what is wrong
        if blob is not None and len(blob) > _MAIN_CODE_MAX:
            blob = None
        known = _compiled_mains[path] = (stamp, blob)
    return None if known[1] is None else known


def _usable_main_code(path, shipped):
    """The code object sent by the parent, if it was made from the file
    this process sees, by an interpreter that runs it the same way."""
    if not shipped:
        return None
    stamp, blob = shipped
    try:
        if blob is None or tuple(stamp) != _main_stamp(path):
            return None
        return marshal.loads(blob)
    except (OSError, ValueError, EOFError, TypeError):
        return None


_NO_ENTRY = object()


def _run_main_code(path, code):
    """Run the main script's code as module __mp_main__, then make it
    __main__ too: what runpy.run_path(path, run_name='__mp_main__') and
    _install_main() do, minus reading and compiling the file."""
    import types
    module = types.ModuleType('__mp_main__')
    module.__dict__.update(__file__=path, __cached__=None, __package__='')
    # While it runs, the script sees itself as sys.modules['__mp_main__']
    # and as argv[0]; a failure leaves both as they were.
    earlier = sys.modules.get('__mp_main__', _NO_ENTRY)
    argv = sys.argv
    argv0 = argv[0] if argv else _NO_ENTRY
    sys.modules['__mp_main__'] = module
    if argv:
        argv[0] = path
    ok = False
    try:
        exec(code, module.__dict__)
        ok = True
    finally:
        if argv0 is not _NO_ENTRY and argv:
            argv[0] = argv0
        if not ok:
            if earlier is _NO_ENTRY:
                sys.modules.pop('__mp_main__', None)
            else:
                sys.modules['__mp_main__'] = earlier
    old_main_modules.append(sys.modules['__main__'])
    sys.modules['__main__'] = module
    _repoint_dill(module)


def import_main_path(main_path):
    """Run the script at ``main_path`` as ``__mp_main__`` and alias it as
    ``__main__``."""
    _fixup_main_from_path(main_path)
