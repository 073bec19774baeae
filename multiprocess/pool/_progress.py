"""Progress reporting for the pool's ``progress=`` argument.

``progress=True`` draws a tqdm bar when tqdm is installed (the optional
extra ``multiprocess[progress]``), else a one-line text bar on stderr when
stderr is a terminal, else nothing.  A callable gets ``(done, total)``:
at most about ten times a second, and always once at the end (``total`` is
None while an imap's input has not been read to its end).

Reporters are called by whichever pool thread completes a chunk (the
engine thread of a process pool, the worker threads of a ThreadPool),
so they serialize themselves.  Nothing here is imported or called unless
``progress`` is given.
"""

import sys
import threading
import time

# Seconds between two reports (the last one is always made).
INTERVAL = 0.1


def reporter(progress, total):
    """The reporter for a ``progress=`` argument, or None when off."""
    if progress is None or progress is False:
        return None
    if progress is True:
        try:
            import tqdm
        except ImportError:
            stream = sys.stderr
            try:
                tty = stream is not None and stream.isatty()
            except (AttributeError, ValueError):
                tty = False
            if not tty:
                return _Counter(total)
            return _TextBar(total, stream)
        return _TqdmBar(total, tqdm)
    if callable(progress):
        return _CallbackReport(total, progress)
    raise TypeError('progress must be True, False, None or a callable '
                    'taking (done, total), not %s' % type(progress).__name__)


class _Counter:
    """No display (progress=True without tqdm nor a terminal); the base of
    the others.  Result objects report their own counts, so reports from
    several threads (a ThreadPool's) need no arithmetic here."""

    def __init__(self, total):
        self.lock = threading.Lock()
        self.done = 0
        self.total = total
        self.finished = False
        self.last = 0.0

    def update(self, done, total):
        """``done`` calls completed of ``total`` (None: not known yet)."""
        with self.lock:
            if self.finished:
                return
            self.done, self.total = done, total
            now = time.monotonic()
            if now - self.last >= INTERVAL:
                self.last = now
                self._show(False)

    def finish(self, done, total):
        """The job ended (completed, failed or aborted): the last report."""
        with self.lock:
            if self.finished:
                return
            self.finished = True
            self.done, self.total = done, total
            self._show(True)

    def _show(self, last):
        pass


class _CallbackReport(_Counter):

    def __init__(self, total, callback):
        super().__init__(total)
        self.callback = callback

    def _show(self, last):
        try:
            self.callback(self.done, self.total)
        except BaseException:
            # a failing progress callback must not take the pool's thread
            # (and the results it delivers) down with it
            import traceback
            sys.stderr.write('Exception in a pool progress callback:\n')
            traceback.print_exc()


class _TextBar(_Counter):
    WIDTH = 30

    def __init__(self, total, stream):
        super().__init__(total)
        self.stream = stream

    def _show(self, last):
        done, total = self.done, self.total
        if total:
            filled = min(self.WIDTH, self.WIDTH * done // total)
            line = '\r|%s%s| %d/%d %3d%%' % (
                '#' * filled, ' ' * (self.WIDTH - filled), done, total,
                100 * done // total)
        else:
            line = '\r%d done' % done
        try:
            self.stream.write(line + ('\n' if last else ''))
            self.stream.flush()
        except (OSError, ValueError):
            pass


class _TqdmBar(_Counter):

    def __init__(self, total, tqdm):
        super().__init__(total)
        self.bar = tqdm.tqdm(total=total)
        self.shown = 0

    def _show(self, last):
        bar = self.bar
        if bar.total != self.total:
            bar.total = self.total
            bar.refresh()
        if self.done > self.shown:
            bar.update(self.done - self.shown)
            self.shown = self.done
        if last:
            bar.close()
