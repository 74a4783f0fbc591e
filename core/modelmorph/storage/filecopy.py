"""Moving bytes between files without passing them through Python objects: the kernel's
``copy_file_range`` where it exists, chunked ``pread``/``pwrite`` elsewhere; and CRC-32s: of
bytes (:func:`crc32`, zlib-ng's when installed, ten times zlib's speed or more), of a range of a
file, and of a whole assembled from its pieces' CRCs (:func:`crc32_combine`,
:func:`assemble_crc32`), so that no byte is read twice for a checksum.

A tensor whose bytes are already in the source file (:class:`~modelmorph.ir.ByteRange`) is
copied this way by writers that store the same bytes: no numpy, no decoding.
"""

from __future__ import annotations

import bisect
import errno
import io
import os
import threading
import zlib
from typing import Any, BinaryIO, Callable, Iterable, Iterator, NamedTuple

try:  # zlib-ng computes CRC-32 with carry-less multiplication: tens of GB/s where zlib 1.2 does ~2.5
    from zlib_ng.zlib_ng import crc32 as _fast_crc32
    from zlib_ng.zlib_ng import crc32_combine as _fast_combine
except ImportError:  # optional at run time: zlib and the combination below give the same numbers
    _fast_crc32, _fast_combine = zlib.crc32, None

#: Which library computes CRC-32s here ("zlib-ng" or "zlib").
CRC32_ENGINE = "zlib" if _fast_combine is None else "zlib-ng"

_CHUNK = 1 << 24
_CRC_CHUNK = 1 << 22
# copy_file_range refuses some pairs of files (across file systems on older kernels, special
# files): then the portable loop does the job.
_FALLBACK_ERRNOS = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF, errno.EPERM}


def copy_range(src: BinaryIO, src_offset: int, dst: BinaryIO | int, dst_offset: int, nbytes: int) -> None:
    """Copy ``nbytes`` from ``src`` at ``src_offset`` to ``dst`` (a file or a descriptor) at ``dst_offset``.

    Works on the file descriptors: neither file's position moves, and ``dst`` must have no
    buffered writes pending (flush it first). ``src`` may also be an in-memory file (BytesIO).
    Raises EOFError if ``src`` ends early.
    """
    dfd = dst if isinstance(dst, int) else dst.fileno()
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


def read_pieces(src: BinaryIO | int, offset: int, nbytes: int, buffer: memoryview) -> Iterator[memoryview]:
    """``nbytes`` of ``src`` (a descriptor, an open file, or an in-memory file) from ``offset``,
    read into ``buffer`` a piece at a time: each piece is a view of ``buffer``, valid until the
    next is asked for, so that the bytes pass through no Python object. ``src``'s position does
    not move (descriptors are read with ``preadv``). Raises EOFError if ``src`` ends early."""
    fd = src
    if not isinstance(src, int):
        try:
            fd = src.fileno()
        except (OSError, ValueError):  # io.UnsupportedOperation: an in-memory file
            fd = None
    done = 0
    while done < nbytes:
        want = buffer if nbytes - done >= len(buffer) else buffer[:nbytes - done]
        if fd is None:
            src.seek(offset + done)
            n = src.readinto(want) or 0
        elif hasattr(os, "preadv"):
            n = os.preadv(fd, [want], offset + done)
        else:
            data = os.pread(fd, len(want), offset + done)
            n = len(data)
            want[:n] = data
        if n <= 0:
            raise EOFError(f"the source ends {nbytes - done} bytes early")
        yield want if n == len(want) else want[:n]
        done += n


def crc32(data, crc: int = 0) -> int:
    """The CRC-32 (zip's, zlib's) of a bytes-like object, continuing from ``crc``."""
    return _fast_crc32(data, crc)


# -- combining CRCs --------------------------------------------------------------------------
# A CRC is linear over GF(2): the CRC of A+B is the CRC of A multiplied by x^(8*len(B)) modulo
# the CRC's polynomial, plus (xor) the CRC of B. Polynomials are held bit-reflected, as the CRC
# is: bit 31 is the x^0 term. Powers x^(2^k) are tabled once, so a combination costs one
# multiplication per set bit of the length (microseconds), whatever the length.
_POLY32 = 0xEDB88320  # CRC-32 (zip), reflected
_POWERS: dict[int, list[int]] = {}


def _multiply(a: int, b: int, poly: int) -> int:
    """a(x) * b(x) modulo the polynomial, all reflected."""
    product = 0
    bit = 1 << 31  # the x^0 term of a
    while a:
        if a & bit:
            product ^= b
            a ^= bit
        bit >>= 1
        b = (b >> 1) ^ poly if b & 1 else b >> 1  # b *= x
    return product


def _shift(crc: int, nbytes: int, poly: int) -> int:
    """crc(x) * x^(8 * nbytes) modulo the polynomial."""
    if not crc:  # zero times anything (a combination starting from nothing: most tensors' CRCs)
        return 0
    powers = _POWERS.get(poly)
    if powers is None:
        powers = [1 << 30]  # x^1
        for _ in range(66):
            powers.append(_multiply(powers[-1], powers[-1], poly))  # x^(2^k)
        _POWERS[poly] = powers
    k = 3  # 8 * nbytes: start at x^(2^3)
    while nbytes:
        if nbytes & 1:
            crc = _multiply(powers[k], crc, poly)
        nbytes, k = nbytes >> 1, k + 1
    return crc


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of ``A + B`` from ``crc1`` (of A), ``crc2`` (of B) and B's length."""
    if len2 <= 0:
        return crc1
    if _fast_combine is not None:
        return _fast_combine(crc1, crc2, len2)
    return _shift(crc1, len2, _POLY32) ^ crc2


def crc_combine(crc1: int, crc2: int, len2: int, poly: int) -> int:
    """:func:`crc32_combine` for another reflected CRC of the same shape (pre- and post-
    inverted), given its reflected polynomial: ``0x82F63B78`` for CRC-32C."""
    return crc1 if len2 <= 0 else _shift(crc1, len2, poly) ^ crc2


def assemble_crc32(file: BinaryIO, start: int, end: int, known: Iterable[tuple[int, int, int]]) -> int:
    """The CRC-32 of ``file``'s bytes ``[start, end)``, given the CRCs of some ranges of them as
    ``(offset, nbytes, crc)``: those ranges are combined, not read; the bytes between them
    (a writer's metadata, padding) are read. Ranges must not overlap."""
    crc, at = 0, start
    for offset, nbytes, piece in sorted(known):
        if offset < at or offset + nbytes > end:
            raise ValueError(f"range {offset}..{offset + nbytes} overlaps another or lies outside {start}..{end}")
        if offset > at:
            crc = crc32_range(file, at, offset - at, crc)
        crc, at = crc32_combine(crc, piece, nbytes), offset + nbytes
    return crc32_range(file, at, end - at, crc) if end > at else crc


def crc32_range(file: BinaryIO, start: int, size: int, crc: int = 0) -> int:
    """The CRC-32 (zip's) of ``size`` bytes of ``file`` from ``start``, read through one small
    buffer (mapping the file instead would count it all as resident memory), continuing from
    ``crc``. Raises EOFError if the file is shorter."""
    for piece in read_pieces(file, start, size, memoryview(bytearray(min(size, _CRC_CHUNK)))):
        crc = _fast_crc32(piece, crc)
    return crc


class BackgroundRanges:
    """CRC-32s (or the CRCs ``checksum`` computes) of ranges of a file, computed one after
    another by a thread as a writer hands them over (:meth:`add`, once the bytes are written):
    the writer goes on copying meanwhile.
    The thread starts with the first range; :meth:`stop` ends it: after the last result was
    asked for, or after a failure."""

    def __init__(self, file: BinaryIO, checksum: Callable[[BinaryIO, int, int], int] | None = None):
        self.file = file
        self._checksum = checksum or crc32_range  # another CRC of a range: (file, offset, nbytes) -> int
        self._queue: list[tuple[int, int, list]] = []
        self._ready = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def add(self, offset: int, nbytes: int) -> Callable[[], int]:
        """Queue ``[offset, offset + nbytes)``; returns what gives its CRC-32 (waiting for it)."""
        slot: list = []  # [crc] or [exception], once done
        with self._ready:
            self._queue.append((offset, nbytes, slot))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="modelmorph-crc32", daemon=True)
                self._thread.start()
            self._ready.notify_all()

        def result() -> int:
            with self._ready:
                while not slot:
                    self._ready.wait()
            if isinstance(slot[0], BaseException):
                raise slot[0]
            return slot[0]

        return result

    def stop(self) -> None:
        """Finish the range under way, drop those still queued (asking for them raises)."""
        with self._ready:
            self._stopping = True
            for _, _, slot in self._queue:
                slot.append(RuntimeError("the CRC-32 thread was stopped before this range"))
            self._queue.clear()
            thread = self._thread
            self._ready.notify_all()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._stopping:
                    self._ready.wait()
                if not self._queue:
                    return
                offset, nbytes, slot = self._queue.pop(0)
            try:
                value: object = self._checksum(self.file, offset, nbytes)
            except BaseException as exc:  # given to whoever asks for this range
                value = exc
            with self._ready:
                slot.append(value)
                self._ready.notify_all()


# -- copying and checksumming in one pass ------------------------------------------------------
#: A piece this size stays in the CPU's L2 cache between the read into it, its CRC and the write
#: from it: the bytes cross memory once, as in ``cp``. Measured (1 GiB, page cache, Linux 6.x):
#: 256 KiB costs the CPU time of ``copy_file_range`` between page-aligned offsets, CRC included;
#: ``copy_file_range`` from an offset that is not page-aligned (any tensor in an HDF5 file) costs
#: 40% more and still needs its CRC pass; 4 MiB pieces cost three times as much.
COPY_PIECE = 1 << 18


#: Copies are cut into units of at most this size, which two threads share (see
#: :func:`copy_ranges_crc32`): a model's many small tensors and its few large ones alike keep
#: both cores busy, and a unit is large enough that its CRC combination costs nothing.
COPY_UNIT = 1 << 23
_PAGE = 4096


class CopyJob(NamedTuple):
    """One range to copy: ``nbytes`` of ``src`` from ``src_offset`` to ``dst_offset``; ``feed``
    (optional) gets each piece read, with its position in the range (a source's own check:
    ``ByteRange.claim_check``), possibly from two threads at once."""

    src: Any
    src_offset: int
    dst_offset: int
    nbytes: int
    feed: Callable[[memoryview, int], None] | None = None


def copy_range_crc32(src: BinaryIO, src_offset: int, dst: BinaryIO, dst_offset: int, nbytes: int,
                     crc: int = 0, feed: Callable[[memoryview, int], None] | None = None) -> int:
    """:func:`copy_range` that also returns the CRC-32 of the bytes copied (continuing from
    ``crc``): one job of :func:`copy_ranges_crc32`."""
    return crc32_combine(crc, copy_ranges_crc32([CopyJob(src, src_offset, dst_offset, nbytes, feed)], dst)[0], nbytes)


def copy_ranges_crc32(jobs: list[CopyJob], dst: BinaryIO, advance: Callable[[int], None] | None = None) -> list[int]:
    """Copy every job's range to ``dst`` and return the CRC-32 of each, computed on the way
    through one small buffer per thread: no second read of either file for a checksum, and the
    copy itself costs no more than ``copy_file_range`` (see ``COPY_PIECE``).

    Jobs that continue one another in both files (a checkpoint's tensors copied, in order, into
    a weights file) are copied as one range: a model's hundreds of small tensors cost a few
    large reads and writes, not one each (ResNet50's 320 tensors: 48 ms -> 37 ms). Each job
    still gets its own CRC, and its ``feed`` its own pieces.

    The ranges are cut into units of at most ``COPY_UNIT`` bytes, taken in order by two threads
    (positioned reads and writes, CRCs and all release the GIL: on two cores about half the wall
    time for the same CPU time); a job's CRC is combined from its parts'. ``advance(nbytes)`` is
    called as units are done (from either thread, never at once). Same contract as
    :func:`copy_range` (descriptors, positions unmoved, EOFError); on a failure the first error
    is raised once both threads have stopped."""
    runs = _runs(jobs)
    shared, own = [], []  # units: (run, offset in the run, length)
    for number, run in enumerate(runs):
        if not run.nbytes:
            continue
        if isinstance(jobs[run.first].src, io.BytesIO):  # one position to seek: the caller's thread reads it, whole
            own.append((number, 0, run.nbytes))
        else:
            starts = _unit_starts(jobs[run.first].dst_offset, run.nbytes)
            shared += [(number, at, end - at) for at, end in zip(starts, [*starts[1:], run.nbytes])]
    parts: list[tuple[int, int, int, int]] = []  # (job, offset in the job, length, CRC)
    lock = threading.Lock()
    state: dict[str, Any] = {"next": 0, "error": None}

    def work(units: list[tuple[int, int, int]], shared_units: bool) -> None:
        mine = iter(units)
        while True:
            with lock:
                if state["error"] is not None:
                    return
                if shared_units:
                    if state["next"] == len(units):
                        return
                    unit = units[state["next"]]
                    state["next"] += 1
                else:
                    unit = next(mine, None)
                    if unit is None:
                        return
            number, at, length = unit
            try:
                done = _copy_crc32(jobs, runs[number], at, length, dst)
            except BaseException as exc:
                with lock:
                    if state["error"] is None:
                        state["error"] = exc
                return
            with lock:
                parts.extend(done)
                if advance is not None:
                    advance(length)

    helper = None
    if len(shared) > 1:
        helper = threading.Thread(target=work, args=(shared, True), name="modelmorph-copy", daemon=True)
        helper.start()
    try:
        work(own, False)
        work(shared, True)
    finally:
        if helper is not None:
            helper.join()
    if state["error"] is not None:
        raise state["error"]
    out = [0] * len(jobs)
    for index, _, length, crc in sorted(parts):  # each job's parts in order
        out[index] = crc32_combine(out[index], crc, length)
    return out


def _unit_starts(dst_offset: int, nbytes: int) -> list[int]:
    """Where the units of a run of ``nbytes`` copied to ``dst_offset`` begin: every ``COPY_UNIT``
    bytes from the output's first page boundary on, so that every write but the first begins on
    a page boundary of the output (pieces are whole pages), wherever the output's layout puts
    the tensors. Writes that begin inside a page cost ~15% more system time (measured in one
    thread, ext4, 512 MiB from the page cache: 0.23 s against 0.20 s; in the two threads' copy
    the difference was within this machine's noise)."""
    lead = -dst_offset % _PAGE
    return [0, *range(lead or COPY_UNIT, nbytes, COPY_UNIT)]


class _Run(NamedTuple):
    """Jobs ``first`` .. ``first + len(starts) - 1``, which continue one another in both files;
    ``starts``: where each begins in the run."""

    first: int
    starts: list[int]
    nbytes: int


def _runs(jobs: list[CopyJob]) -> list[_Run]:
    runs: list[_Run] = []
    first, starts, at = 0, [], 0
    for index, job in enumerate(jobs):
        if starts and not _continues(jobs[index - 1], job):
            runs.append(_Run(first, starts, at))
            first, starts, at = index, [], 0
        starts.append(at)
        at += job.nbytes
    if starts:
        runs.append(_Run(first, starts, at))
    return runs


def _continues(before: CopyJob, job: CopyJob) -> bool:
    """Whether ``job`` begins where ``before`` ends in the source and in the output (two file
    objects over one open file share a descriptor; in-memory sources are never joined)."""
    if job.src_offset != before.src_offset + before.nbytes or job.dst_offset != before.dst_offset + before.nbytes:
        return False
    if job.src is before.src:
        return not isinstance(job.src, io.BytesIO)
    try:
        return job.src.fileno() == before.src.fileno()
    except (AttributeError, OSError, ValueError):
        return False


def _copy_crc32(jobs: list[CopyJob], run: _Run, at: int, nbytes: int, dst: BinaryIO) -> list[tuple[int, int, int, int]]:
    """Copy ``nbytes`` of ``run`` from ``at``; returns the parts of its jobs this covered, as
    ``(job, offset in the job, length, CRC-32)``, after feeding each job its pieces."""
    head = jobs[run.first]
    dfd, done = dst.fileno(), 0
    k = bisect.bisect_right(run.starts, at) - 1  # the job holding the unit's first byte
    parts: dict[int, list[int]] = {}  # job -> [offset in the job, length, CRC]
    for piece in read_pieces(head.src, head.src_offset + at, nbytes, memoryview(bytearray(min(nbytes, COPY_PIECE)))):
        low, high = at + done, at + done + len(piece)
        while k < len(run.starts) and run.starts[k] < high:
            index = run.first + k
            begin, end = run.starts[k], run.starts[k] + jobs[index].nbytes
            if end > low and end > begin:  # an empty job has no part
                sub = piece if begin <= low and high <= end else piece[max(begin, low) - low:min(end, high) - low]
                part = parts.get(index)
                if part is None:
                    part = parts[index] = [max(begin, low) - begin, 0, 0]
                part[2] = _fast_crc32(sub, part[2])
                if jobs[index].feed is not None:
                    jobs[index].feed(sub, part[0] + part[1])
                part[1] += len(sub)
            if end > high:
                break
            k += 1
        _pwrite_all(dfd, piece, head.dst_offset + low)
        done += len(piece)
    return [(index, offset, length, crc) for index, (offset, length, crc) in parts.items()]


def stored_as_is(weight, nbytes: int) -> bool:
    """Whether ``weight.raw`` holds exactly the ``nbytes`` a writer stores for it, as they are
    stored (plain, little-endian): then they are copied file to file, never decoded."""
    raw = weight.raw
    return raw is not None and raw.layout == "plain" and raw.nbytes == nbytes


class CopyClaims:
    """The checks of their sources that a writer takes over for the tensors it copies, so that
    each byte is read once: a zip's CRC-32 (``ByteRange.claim_crc32``), a checkpoint's CRC-32C
    (``ByteRange.claim_check``). Made for all of a file's weights before the first copy starts;
    :meth:`copy` copies them and gives each source what it computed; :meth:`release` gives back
    the rest (a write that failed), so no check is left claimed and never done."""

    def __init__(self, weights: Iterable):
        self._claims: dict[int, tuple[Callable | None, Callable | None]] = {}
        for weight in weights:
            if not stored_as_is(weight, weight.nbytes):
                continue
            raw = weight.raw
            report = raw.claim_crc32() if raw.claim_crc32 is not None else None
            feed = raw.claim_check() if raw.claim_check is not None else None
            if report is not None or feed is not None:
                self._claims[id(weight)] = (report, feed)

    def copy(self, placed: list[tuple[Any, int]], dst: BinaryIO, advance: Callable[[int], None] | None = None) -> list[int]:
        """Copy each ``(weight, dst_offset)``'s ``weight.raw`` bytes to ``dst`` at ``dst_offset``
        (:func:`copy_ranges_crc32`); returns their CRC-32s. Raises the source's ReadError if its
        check failed on them (once all are copied: the output is not kept either way)."""
        claims = [self._claims.pop(id(weight), (None, None)) for weight, _ in placed]
        jobs = [CopyJob(w.raw.file, w.raw.offset, at, w.raw.nbytes, feed) for (w, at), (_, feed) in zip(placed, claims)]
        crcs = None
        try:
            crcs = copy_ranges_crc32(jobs, dst, advance)
        finally:
            verdict = None
            for index, (report, feed) in enumerate(claims):
                if report is not None:
                    report(crcs[index] if crcs is not None else None)
                if feed is not None:
                    try:
                        feed(None)  # the check's verdict (or, after a failed copy, the check given back)
                    except BaseException as exc:
                        verdict = verdict or exc
            if verdict is not None and crcs is not None:
                raise verdict
        return crcs

    def release(self) -> None:
        claims, self._claims = self._claims, {}
        for report, feed in claims.values():
            if report is not None:
                report(None)
            if feed is not None:
                feed(None)  # nothing fed: given back, never a verdict


class SharedCrc32:
    """A reader's check: the CRC-32 of ``[start, end)`` of ``file``, whose ``pieces`` (tensors,
    as ``(offset, nbytes)``) a writer that copies them anyway may checksum for it
    (:func:`copy_range_crc32`), so that no byte is read twice.

    :meth:`start` runs a thread over what no writer claimed: the bytes between the pieces first
    (metadata, small), then the unclaimed pieces, last first (a writer copies from the first on,
    claiming them all before it starts). A writer calls :meth:`claim` before reading a piece and
    gives the CRC-32 of what it read to the function returned. :meth:`result` waits for the
    thread, reads whatever is still unknown (a claim never reported) and combines the whole.
    Pieces that overlap another or leave the range are not pieces (their bytes are read as the
    rest is): a hostile file cannot make a byte go unchecked.
    """

    def __init__(self, file: BinaryIO, start: int, end: int, pieces: Iterable[tuple[int, int]] = ()):
        self.file, self.start_offset, self.end = file, start, end
        self._segments: list[list] = []  # [offset, nbytes, is_piece, state, crc]; states below
        self._pieces: dict[tuple[int, int], list] = {}
        at = start
        for offset, nbytes in sorted(set(pieces)):
            if nbytes <= 0 or offset < at or offset + nbytes > end:
                continue  # empty, overlapping or outside: covered as plain bytes
            if offset > at:
                self._segments.append([at, offset - at, False, _FREE, None])
            segment = [offset, nbytes, True, _FREE, None]
            self._segments.append(segment)
            self._pieces[(offset, nbytes)] = segment
            at = offset + nbytes
        if end > at:
            self._segments.append([at, end - at, False, _FREE, None])
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running = self._stopping = False
        self._error: BaseException | None = None

    def start(self) -> None:
        with self._ready:
            if self._thread is not None:
                return
            self._running = True
            self._thread = threading.Thread(target=self._run, name="modelmorph-crc32", daemon=True)
        self._thread.start()

    def claim(self, offset: int, nbytes: int) -> Callable[[int | None], None] | None:
        """Take the piece ``(offset, nbytes)`` over: returns the function to give its CRC-32 to
        once read (None if it could not be: the piece is then read by :meth:`result`), or None if
        it is no piece, or is checked already or being checked."""
        with self._ready:
            segment = self._pieces.get((offset, nbytes))
            if segment is None or segment[3] != _FREE:
                return None
            segment[3] = _CLAIMED

        def report(crc: int | None) -> None:
            with self._ready:
                if segment[3] == _CLAIMED:
                    segment[3], segment[4] = (_FREE, None) if crc is None else (_DONE, crc)
                    self._ready.notify_all()

        return report

    def piece_crc32(self, offset: int, nbytes: int) -> int | None:
        """The CRC-32 of the piece ``(offset, nbytes)``, waiting for the thread if it has it to
        do; None if unknown (no such piece, the thread stopped, or a claim not yet reported)."""
        self.start()
        with self._ready:
            segment = self._pieces.get((offset, nbytes))
            if segment is None:
                return None
            while segment[3] in (_FREE, _BUSY) and self._running:
                self._ready.wait()
            return segment[4] if segment[3] == _DONE else None

    def result(self) -> int:
        """The CRC-32 of the whole range. Raises what reading raised (EOFError: the file is shorter)."""
        self.stop()
        if self._error is not None:
            raise self._error
        crc = 0
        for offset, nbytes, _, state, piece in self._segments:
            if state != _DONE:  # never started, or claimed and not reported
                piece = crc32_range(self.file, offset, nbytes)
            crc = crc32_combine(crc, piece, nbytes)
        return crc

    def stop(self) -> None:
        """End the thread after the piece under way (what it did not do stays to be read)."""
        with self._ready:
            self._stopping = True
            thread = self._thread
            self._ready.notify_all()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        order = [s for s in self._segments if not s[2]] + [s for s in reversed(self._segments) if s[2]]
        try:
            for segment in order:
                with self._ready:
                    if self._stopping:
                        return
                    if segment[3] != _FREE:
                        continue
                    segment[3] = _BUSY
                try:
                    crc = crc32_range(self.file, segment[0], segment[1])
                except BaseException:
                    with self._ready:
                        segment[3] = _FREE
                    raise
                with self._ready:
                    segment[3], segment[4] = _DONE, crc
                    self._ready.notify_all()
        except BaseException as exc:  # reported by result()
            self._error = exc
        finally:
            with self._ready:
                self._running = False
                self._ready.notify_all()


_FREE, _BUSY, _CLAIMED, _DONE = "free", "busy", "claimed", "done"
