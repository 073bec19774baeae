# multiprocess: the standard library's multiprocessing API, pickling with
# dill, with the mechanics in the C extension _multiprocess.
#
# Where things live, layer by layer (each imports only from its own layer or
# below, and no module closes a circle): docs/architecture.md, whose table
# tests/test_architecture.py checks against the imports.
#
# This module re-exports: every public name is a bound method or attribute
# of context._default_context, whose start method is fixed on first use
# (fork on Linux, as in Python 3.11).  As the composition root it also
# plugs in what a lower layer may not import (context._fd_sharer).

import sys as _sys

# The distribution's version too: pyproject.toml reads it from here.
__version__ = '0.1.0'

from . import context as _context
from .exceptions import (ProcessError, BufferTooShort, TimeoutError,
                         AuthenticationError, WorkerLostError,
                         TaskTimeoutError)

__all__ = [
    # processes
    'Process', 'current_process', 'parent_process', 'active_children',
    'cpu_count',
    # start methods and contexts
    'get_context', 'get_start_method', 'set_start_method',
    'get_all_start_methods', 'set_executable', 'set_forkserver_preload',
    'freeze_support',
    # communication and synchronization
    'Pipe', 'Queue', 'JoinableQueue', 'SimpleQueue',
    'Lock', 'RLock', 'Condition', 'Semaphore', 'BoundedSemaphore',
    'Event', 'Barrier',
    # shared state, pools, managers
    'Value', 'Array', 'RawValue', 'RawArray', 'Pool', 'Manager',
    # logging and pickling
    'get_logger', 'log_to_stderr', 'allow_connection_pickling', 'reducer',
    # errors
    'ProcessError', 'BufferTooShort', 'TimeoutError', 'AuthenticationError',
    'WorkerLostError', 'TaskTimeoutError',
]

_ctx = _context._default_context


def _share_fd(fd):
    # reduction.DupFd's way to an fd for a process that is already running
    # (see context._fd_sharer): the sharer sits above the pickling layer
    # that needs it, so the package wires the two.  Imported on first use.
    from . import resource_sharer
    return resource_sharer.DupFd(fd)


_context._fd_sharer = _share_fd

Process = _ctx.Process
current_process = _ctx.current_process
parent_process = _ctx.parent_process
active_children = _ctx.active_children
cpu_count = _ctx.cpu_count

get_context = _ctx.get_context
get_start_method = _ctx.get_start_method
set_start_method = _ctx.set_start_method
get_all_start_methods = _ctx.get_all_start_methods
set_executable = _ctx.set_executable
set_forkserver_preload = _ctx.set_forkserver_preload
freeze_support = _ctx.freeze_support

Pipe = _ctx.Pipe
Queue = _ctx.Queue
JoinableQueue = _ctx.JoinableQueue
SimpleQueue = _ctx.SimpleQueue
Lock = _ctx.Lock
RLock = _ctx.RLock
Condition = _ctx.Condition
Semaphore = _ctx.Semaphore
BoundedSemaphore = _ctx.BoundedSemaphore
Event = _ctx.Event
Barrier = _ctx.Barrier

Value = _ctx.Value
Array = _ctx.Array
RawValue = _ctx.RawValue
RawArray = _ctx.RawArray
Pool = _ctx.Pool
Manager = _ctx.Manager

get_logger = _ctx.get_logger
log_to_stderr = _ctx.log_to_stderr
allow_connection_pickling = _ctx.allow_connection_pickling

# Logging levels below DEBUG and between INFO and WARNING (also in util).
SUBDEBUG = 5
SUBWARNING = 25


# The pickling layer, loaded with the package as the standard library's is.
# Loading it on first use instead saved about 9 ms of `import multiprocess`,
# but needed a module __getattr__ until then, and CPython does not
# specialize attribute reads on a module that has one: every mp.X cost
# 1.6-1.8x the stdlib's in programs that never pickled anything.
from . import reduction as _reduction
reducer = _ctx.reducer


# A spawned child runs the parent's main module under the name
# '__mp_main__' (so that its ``if __name__ == '__main__'`` block does not
# run again); objects pickled by reference to '__mp_main__' must resolve in
# the parent too.  The spawn machinery rebinds this in children.
if '__main__' in _sys.modules:
    _sys.modules['__mp_main__'] = _sys.modules['__main__']
