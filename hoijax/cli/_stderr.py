"""Keep XLA's slow-compilation alarm off the commands' terminal.

When one compilation takes minutes (the tracker on 2 busy cores), XLA's C++ logger writes to
file descriptor 2::

    E1206 04:25:00.1 22244 slow_operation_alarm.cc:73]
    ********************************
    [Compiling module jit__track_batch for CPU] Very slow compile? If you want to file a bug, ...
    ********************************

The commands already say that they are compiling and for how long, so this block only alarms.
It cannot be turned off on its own: ``TF_CPP_MIN_LOG_LEVEL=3`` hides every XLA error too, and
only if set before jaxlib loads. :class:`DropXlaAlarm` instead routes descriptor 2 through a pipe
for the duration of a command and forwards everything except the alarm's lines (the logger's
``slow_operation_alarm.cc`` lines, the lines of asterisks, and the "Very slow compile?" line).
Text that cannot start such a line (a progress bar's ``\\r`` redraw) is forwarded at once, not
held until a newline. ``HOIJAX_SHOW_XLA_ALARMS=1`` leaves descriptor 2 alone.
"""

from __future__ import annotations

import os
import re
import sys
import threading

_ALARM_LINE = re.compile(rb"slow_operation_alarm\.cc|Very slow compile\?|^\s*\*{8,}\s*$")
_GLOG_PREFIX = re.compile(rb"[EWIF](\d{4}\s|\d{0,4}$)")  # "E1206 04:27:13.6 ...", or its start
_COMPILING = b"[Compiling module"


def _may_be_alarm(start: bytes) -> bool:
    """Whether a line that begins with ``start`` (no newline yet) may be one of the alarm's:
    a log line (its file name comes later), asterisks, or the "[Compiling module" line."""
    return bool(_GLOG_PREFIX.match(start) or start.startswith(b"*")
                or start.startswith(_COMPILING) or _COMPILING.startswith(start))


class AlarmFilter:
    """The line filter itself, on bytes: :meth:`feed` returns what may be forwarded now,
    :meth:`flush` the rest at the end."""

    def __init__(self):
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk
        out = []
        *lines, rest = data.split(b"\n")
        for line in lines:
            if not _ALARM_LINE.search(line):
                out.append(line + b"\n")
        if rest and not _may_be_alarm(rest):
            out.append(rest)
            rest = b""
        self._pending = rest
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return b"" if _ALARM_LINE.search(rest) else rest


class DropXlaAlarm:
    """Context manager: file descriptor 2 goes through :class:`AlarmFilter` while it is open.

    Python's ``sys.stderr`` is left as it is (pytest's capture and tqdm keep working): when it
    writes to descriptor 2, its text passes the filter unchanged. Does nothing when
    ``HOIJAX_SHOW_XLA_ALARMS`` is set or descriptor 2 is not open."""

    def __init__(self):
        self._saved = None

    def __enter__(self):
        if os.environ.get("HOIJAX_SHOW_XLA_ALARMS", "") not in ("", "0"):
            return self
        try:
            saved = os.dup(2)
        except OSError:
            return self
        read_fd, write_fd = os.pipe()
        _flush_python_stderr()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._saved = saved
        self._thread = threading.Thread(target=self._forward, args=(read_fd, saved),
                                        name="hoijax-stderr-filter", daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _forward(read_fd: int, target: int) -> None:
        filt = AlarmFilter()
        try:
            while chunk := os.read(read_fd, 65536):
                _write_all(target, filt.feed(chunk))
            _write_all(target, filt.flush())
        except OSError:
            pass
        finally:
            os.close(read_fd)

    def __exit__(self, *exc):
        if self._saved is None:
            return False
        _flush_python_stderr()
        os.dup2(self._saved, 2)  # closes the pipe's last write end: the thread reads EOF
        # A child process that inherited descriptor 2 may hold the pipe open; do not wait on it.
        self._thread.join(timeout=2.0)
        if not self._thread.is_alive():
            os.close(self._saved)
        self._saved = None
        return False


def _flush_python_stderr() -> None:
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError, OSError):
        pass


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]
