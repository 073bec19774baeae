"""multiprocess's own test suite.

In the source tree this is the ``tests/`` directory (``python -m pytest
tests``); an installed multiprocess carries the same files as the package
``multiprocess.tests`` (pyproject.toml maps one onto the other), so

    python -m multiprocess.tests [pytest options]

checks an installation in place.  See ``__main__.py`` for what that command
leaves out when the source tree is not around.
"""
