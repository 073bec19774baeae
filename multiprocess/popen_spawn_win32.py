"""Placeholder for the Windows 'spawn' start method.

multiprocess targets Linux (fork, spawn and forkserver).  The module exists
because code written against the standard library lists the package's
modules by file name and expects this one among them; importing it off
Windows fails the way the standard library's does there.
"""

import sys

__all__ = ['Popen']

if sys.platform != 'win32':
    raise ImportError('popen_spawn_win32 is only available on Windows; '
                      'multiprocess supports Linux only')

raise ImportError('multiprocess does not support Windows')
