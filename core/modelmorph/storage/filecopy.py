"""Moving bytes between files without passing them through Python objects: the kernel's
``copy_file_range`` where it exists, chunked ``pread``/``pwrite`` elsewhere; and the CRC-32 of
a range of a file.

A tensor whose bytes are already in the source file (:class:`~modelmorph.ir.ByteRange`) is
copied this way by writers that store the same bytes: no numpy, no decoding.
"""

from __future__ import annotations

import errno
import os
import threading
import zlib
from typing import BinaryIO

_CHUNK = 1 << 24
_CRC_CHUNK = 1 << 22
# copy_file_range refuses some pairs of files (across file systems on older kernels, special
# files): then the portable loop does the job.
_FALLBACK_ERRNOS = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF, errno.EPERM}


def copy_range(src: BinaryIO, src_offset: int, dst: BinaryIO, dst_offset: int, nbytes: int) -> None:
    """Copy ``nbytes`` from ``src`` at ``src_offset`` to ``dst`` at ``dst_offset``.

    Works on the file descriptors: neither file's position moves, and ``dst`` must have no
    buffered writes pending (flush it first). ``src`` may also be an in-memory file (BytesIO).
    Raises EOFError if ``src`` ends early.
    """
    dfd = dst.fileno()
    try:
        sfd = src.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation: no descriptor, read it the plain way
        src.seek(src_offset)
        data = src.read(nbytes)
        if len(data) != nbytes:
            raise EOFError(f"the source ends {nbytes - len(data)} bytes early") from None
        _pwrite_all(dfd, memoryview(data), dst_offset)
        return
    done = 0
    if hasattr(os, "copy_file_range"):
        try:
            while done < nbytes:
                n = os.copy_file_range(sfd, dfd, nbytes - done, src_offset + done, dst_offset + done)
                if n == 0:
                    raise EOFError(f"the source ends {nbytes - done} bytes early")
                done += n
            return
        except OSError as exc:
            if exc.errno not in _FALLBACK_ERRNOS:
                raise
    while done < nbytes:
        chunk = os.pread(sfd, min(_CHUNK, nbytes - done), src_offset + done)
        if not chunk:
            raise EOFError(f"the source ends {nbytes - done} bytes early")
        _pwrite_all(dfd, memoryview(chunk), dst_offset + done)
        done += len(chunk)


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def crc32_range(file: BinaryIO, start: int, size: int, crc: int = 0) -> int:
    """The CRC-32 (zip's) of ``size`` bytes of ``file`` from ``start``, read through one small
    buffer (mapping the file instead would count it all as resident memory), continuing from
    ``crc``. Raises EOFError if the file is shorter."""
    buffer = memoryview(bytearray(min(size, _CRC_CHUNK)))
    done = 0
    while done < size:
        want = buffer[:min(len(buffer), size - done)]
        if hasattr(os, "preadv"):
            n = os.preadv(file.fileno(), [want], start + done)
        else:
            file.seek(start + done)
            n = file.readinto(want) or 0
        if n <= 0:
            raise EOFError(f"the file ends {size - done} bytes early")
        crc, done = zlib.crc32(want[:n], crc), done + n
    return crc


class BackgroundCrc32:
    """The CRC-32 of a range of a file, computed by a thread while the caller does other work
    (zlib and positioned reads release the GIL: on two cores the checksum costs no wall time).

    The range may still be growing: a writer reports how far it has written with
    :meth:`advance`, and :meth:`result` (given the final end) waits for the checksum.
    """

    def __init__(self, file: BinaryIO, start: int, end: int | None = None):
        self.file, self.done, self.crc = file, start, 0
        self._end, self._final = (start, False) if end is None else (end, True)
        self._error: BaseException | None = None
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="modelmorph-crc32", daemon=True)
        self._thread.start()

    def advance(self, end: int) -> None:
        with self._ready:
            self._end = max(self._end, end)
            self._ready.notify()

    def result(self, end: int | None = None) -> int:
        """The CRC-32 of ``[start, end)`` (``end`` as given to the constructor if not here)."""
        with self._ready:
            if end is not None:
                self._end = end
            self._final = True
            self._ready.notify()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.crc

    def _run(self) -> None:
        try:
            while True:
                with self._ready:
                    while self.done >= self._end and not self._final:
                        self._ready.wait()
                    end, final = self._end, self._final
                if self.done < end:
                    self.crc = crc32_range(self.file, self.done, end - self.done, self.crc)
                    self.done = end
                elif final:
                    return
        except BaseException as exc:  # reported by result()
            self._error = exc
