"""CRC-32s without a second read: the fast CRC-32, combining CRCs of pieces (zlib-ng's and the
pure-Python fallback), a whole assembled from known pieces, a background CRC that also gives
its pieces' CRCs, a copy that checksums what it copies, and a reader's check whose pieces a
writer's copies checksum for it. Judged by zlib (and google_crc32c for the CRC-32C combination)."""

from __future__ import annotations

import io
import random
import threading
import zlib

import google_crc32c
import pytest

from modelmorph.storage import filecopy
from modelmorph.storage.filecopy import (COPY_PIECE, SharedCrc32, assemble_crc32, copy_range_crc32,
                                         crc32_combine, crc_combine)

RNG = random.Random(16)
LENGTHS = [0, 1, 3, 8, 255, 4096, 65537, (1 << 20) + 13]


@pytest.fixture(params=["installed", "zlib"])
def engine(request, monkeypatch):
    """Both engines: whatever is installed (zlib-ng under CI), and zlib with the pure-Python
    combination, the fallback when zlib-ng is absent."""
    if request.param == "zlib":
        monkeypatch.setattr(filecopy, "_fast_crc32", zlib.crc32)
        monkeypatch.setattr(filecopy, "_fast_combine", None)
    return request.param


def test_zlib_ng_is_the_engine_when_installed():
    try:
        import zlib_ng  # noqa: F401
    except ImportError:
        pytest.skip("zlib-ng not installed: zlib is the engine")
    assert filecopy.CRC32_ENGINE == "zlib-ng"


@pytest.mark.parametrize("n1", LENGTHS)
@pytest.mark.parametrize("n2", LENGTHS)
def test_combined_crc_is_the_crc_of_the_whole(engine, n1, n2):
    a, b = RNG.randbytes(n1), RNG.randbytes(n2)
    assert filecopy.crc32(a + b) == zlib.crc32(a + b)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), n2) == zlib.crc32(a + b)
    # CRC-32C, as checkpoints store it, combines by the same rule with its own polynomial.
    assert crc_combine(google_crc32c.value(a), google_crc32c.value(b), n2, 0x82F63B78) == google_crc32c.value(a + b)


def test_pure_combination_agrees_with_zlib_ng_at_any_length():
    zlib_ng = pytest.importorskip("zlib_ng.zlib_ng")
    for length in [1 << 31, (1 << 32) + 7, 5 * (1 << 40) + 12345, (1 << 62) + 1]:
        c1, c2 = RNG.getrandbits(32), RNG.getrandbits(32)
        assert filecopy._shift(c1, length, filecopy._POLY32) ^ c2 == zlib_ng.crc32_combine(c1, c2, length), length
        # A zero first CRC (what a combination starts from) is shifted by no arithmetic at all.
        assert filecopy._shift(0, length, filecopy._POLY32) ^ c2 == zlib_ng.crc32_combine(0, c2, length) == c2


def test_combination_is_associative_for_huge_lengths(engine):
    # Lengths no test can checksum directly (tens of GB): the rule must still compose.
    a, b, c = (RNG.getrandbits(32) for _ in range(3))
    n2, n3 = 3 * (1 << 33) + 5, (1 << 35) + 11
    left = crc32_combine(crc32_combine(a, b, n2), c, n3)
    right = crc32_combine(a, crc32_combine(b, c, n3), n2 + n3)
    assert left == right


def _file(tmp_path, data: bytes):
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return open(path, "rb")


def test_assembled_crc_reads_only_the_gaps(engine, tmp_path):
    data = RNG.randbytes(300_000)
    pieces = [(1000, 50_000), (51_000, 7), (60_000, 200_000)]  # gaps before, between and after
    known = [(o, n, zlib.crc32(data[o:o + n])) for o, n in pieces]
    with _file(tmp_path, data) as f:
        assert assemble_crc32(f, 0, len(data), known) == zlib.crc32(data)
        assert assemble_crc32(f, 1000, 260_000, known) == zlib.crc32(data[1000:260_000])
        assert assemble_crc32(f, 0, len(data), []) == zlib.crc32(data)
        # A wrong piece CRC gives a wrong whole: the pieces really are used, not re-read.
        wrong = [(o, n, c ^ 1) for o, n, c in known]
        assert assemble_crc32(f, 0, len(data), wrong) != zlib.crc32(data)
        with pytest.raises(ValueError, match="overlaps"):
            assemble_crc32(f, 0, len(data), [(0, 100, 0), (50, 100, 0)])


def test_background_ranges_give_each_range_crc(engine, tmp_path):
    data = RNG.randbytes(2 << 20)
    ranges = [(0, 10), (100, 1 << 20), ((1 << 20) + 100, 5000), (7, 0)]
    with _file(tmp_path, data) as f:
        crcs = filecopy.BackgroundRanges(f)
        results = [crcs.add(o, n) for o, n in ranges]
        assert [r() for r in results] == [zlib.crc32(data[o:o + n]) for o, n in ranges]
        crcs.stop()


def test_background_ranges_stopped_drop_what_is_queued(tmp_path):
    data = RNG.randbytes(1 << 16)
    with _file(tmp_path, data) as f:
        crcs = filecopy.BackgroundRanges(f)
        crcs.stop()  # e.g. a failed write: nothing runs, nothing hangs
        late = filecopy.BackgroundRanges(f)
        first = late.add(0, 100)
        assert first() == zlib.crc32(data[:100])
        late.stop()
    with _file(tmp_path, data) as f:
        cut = filecopy.BackgroundRanges(f)
        short = cut.add(len(data) - 10, 100)  # past the end: the error is given to the asker
        with pytest.raises(EOFError):
            short()
        cut.stop()


@pytest.mark.parametrize("nbytes", [0, 1, COPY_PIECE - 1, COPY_PIECE, COPY_PIECE + 1, 3 * COPY_PIECE + 5])
@pytest.mark.parametrize("in_memory", [False, True])
def test_copy_gives_the_crc_of_the_bytes_copied(engine, tmp_path, nbytes, in_memory):
    data = RNG.randbytes(nbytes + 5000)
    src = io.BytesIO(data) if in_memory else _file(tmp_path, data)
    with src, open(tmp_path / "out.bin", "w+b") as dst:
        dst.write(b"head")
        dst.flush()
        crc = copy_range_crc32(src, 777, dst, 4, nbytes, crc=zlib.crc32(b"x"))
        assert crc == zlib.crc32(data[777:777 + nbytes], zlib.crc32(b"x"))
        assert dst.tell() == 4  # positioned writes: the file's position never moves
    assert (tmp_path / "out.bin").read_bytes() == b"head" + data[777:777 + nbytes]


@pytest.mark.parametrize("nbytes", [2 * COPY_PIECE, 5 * COPY_PIECE + 3])
def test_a_copy_shared_by_two_threads_gives_the_crc_of_the_whole(engine, tmp_path, monkeypatch, nbytes):
    monkeypatch.setattr(filecopy, "COPY_UNIT", COPY_PIECE)  # units of one piece: two threads share them
    both = threading.Barrier(2, timeout=10)  # each thread's first unit waits for the other's: both work
    threads = []
    real = filecopy._copy_crc32

    def spy(*args):
        name = threading.current_thread().name
        if name not in threads:
            threads.append(name)
            both.wait()
        return real(*args)

    monkeypatch.setattr(filecopy, "_copy_crc32", spy)
    data = RNG.randbytes(nbytes + 1000)
    with _file(tmp_path, data) as src, open(tmp_path / "out.bin", "w+b") as dst:
        crc = copy_range_crc32(src, 999, dst, 3, nbytes, crc=zlib.crc32(b"x"))
    assert sorted(threads) == ["MainThread", "modelmorph-copy"]
    assert crc == zlib.crc32(data[999:999 + nbytes], zlib.crc32(b"x"))
    assert (tmp_path / "out.bin").read_bytes() == b"\0" * 3 + data[999:999 + nbytes]
    monkeypatch.setattr(filecopy, "_copy_crc32", real)
    with _file(tmp_path, data[:999 + nbytes - 7]) as src, open(tmp_path / "short.bin", "w+b") as dst:
        with pytest.raises(EOFError, match="bytes early"):  # from the last units (either thread)
            copy_range_crc32(src, 999, dst, 0, nbytes)


def test_many_ranges_are_copied_with_the_crc_of_each(engine, tmp_path, monkeypatch):
    """Ranges of all sizes (empty, one piece, several units), from a file and from memory, into
    one output: each CRC is its own range's, every byte lands where it belongs."""
    monkeypatch.setattr(filecopy, "COPY_UNIT", 2 * COPY_PIECE)
    data = RNG.randbytes(8 * COPY_PIECE)
    sizes = [0, 1, COPY_PIECE, 5 * COPY_PIECE + 17, 3, 2 * COPY_PIECE]
    advanced = []
    with _file(tmp_path, data) as src, open(tmp_path / "out.bin", "w+b") as dst:
        jobs, at = [], 0
        for i, n in enumerate(sizes):
            source = io.BytesIO(data) if i == 4 else src
            jobs.append(filecopy.CopyJob(source, 100 * i, at, n))
            at += n
        crcs = filecopy.copy_ranges_crc32(jobs, dst, advanced.append)
    out = (tmp_path / "out.bin").read_bytes()
    assert crcs == [zlib.crc32(data[100 * i:100 * i + n]) for i, n in enumerate(sizes)]
    assert out == b"".join(data[100 * i:100 * i + n] for i, n in enumerate(sizes))
    assert sum(advanced) == sum(sizes)


def test_ranges_that_continue_one_another_are_copied_as_one(engine, tmp_path, monkeypatch):
    """A checkpoint's tensors copied in order into a weights file: jobs that continue one
    another in both files (also through two file objects over one descriptor) are read and
    written a unit at a time, not one call each, and still each get their own CRC and pieces.
    Every write but the first begins on a page boundary of the output."""
    monkeypatch.setattr(filecopy, "COPY_UNIT", 2 * COPY_PIECE)
    data = RNG.randbytes(12 * COPY_PIECE)
    sizes = [256, 0, 1024, 3 * COPY_PIECE + 5, 7, 0, COPY_PIECE, 2 * COPY_PIECE - 11, 1, 16384]
    reads, writes = [], []
    real_preadv, real_pwrite = filecopy.os.preadv, filecopy.os.pwrite
    monkeypatch.setattr(filecopy.os, "preadv", lambda fd, buffers, offset: reads.append(offset) or real_preadv(fd, buffers, offset))
    monkeypatch.setattr(filecopy.os, "pwrite", lambda fd, data, offset: writes.append(offset) or real_pwrite(fd, data, offset))
    with _file(tmp_path, data) as src, open(tmp_path / "out.bin", "w+b") as dst:
        alias = open(src.fileno(), "rb", closefd=False)  # the same open file, another object
        fed: dict[int, list[tuple[int, bytes]]] = {}
        lock = threading.Lock()

        def feeder(i):
            def feed(piece, at):
                with lock:
                    fed.setdefault(i, []).append((at, bytes(piece)))
            return feed

        jobs, at = [], 0
        for i, n in enumerate(sizes):
            jobs.append(filecopy.CopyJob(alias if i % 3 == 1 else src, 500 + at, 9 + at, n, feeder(i)))
            at += n
        crcs = filecopy.copy_ranges_crc32(jobs, dst)
        alias.close()
    total = sum(sizes)
    assert (tmp_path / "out.bin").read_bytes() == b"\0" * 9 + data[500:500 + total]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    assert crcs == [zlib.crc32(data[500 + b:500 + b + n]) for b, n in zip(starts, sizes)]
    for i, (b, n) in enumerate(zip(starts, sizes)):  # each job's pieces tile its own bytes
        pieces = sorted(fed.get(i, []))
        assert b"".join(p for _, p in pieces) == data[500 + b:500 + b + n]
        assert [a for a, _ in pieces] == [sum(len(p) for _, p in pieces[:j]) for j in range(len(pieces))]
    lead = 4096 - 9  # the output's first page boundary
    assert len(reads) == 1 + -(-(total - lead) // COPY_PIECE)  # one read per piece of the run, not per job
    assert sorted(writes)[0] == 9 and all(offset % 4096 == 0 for offset in sorted(writes)[1:])


def test_ranges_that_do_not_continue_are_not_joined(engine, tmp_path):
    """A gap in the source, a gap in the output, another file or memory: each ends a run."""
    data = RNG.randbytes(4096)
    with _file(tmp_path, data) as src, open(tmp_path / "other.bin", "w+b") as other, \
            open(tmp_path / "out.bin", "w+b") as dst:
        other.write(data[::-1])
        other.flush()
        memory = io.BytesIO(data)
        jobs = [filecopy.CopyJob(src, 0, 0, 100), filecopy.CopyJob(src, 101, 100, 100),  # source gap
                filecopy.CopyJob(src, 201, 201, 100),  # output gap
                filecopy.CopyJob(other, 301, 301, 100),  # another file
                filecopy.CopyJob(memory, 401, 401, 100), filecopy.CopyJob(memory, 501, 501, 100)]
        assert [run.first for run in filecopy._runs(jobs)] == [0, 1, 2, 3, 4, 5]
        crcs = filecopy.copy_ranges_crc32(jobs, dst)
        out = (tmp_path / "out.bin").read_bytes()
    expected = [data[0:100], data[101:201], data[201:301], data[::-1][301:401], data[401:501], data[501:601]]
    assert crcs == [zlib.crc32(b) for b in expected]
    assert out[:100] + out[100:200] + out[201:301] + out[301:401] + out[401:501] + out[501:601] == b"".join(expected)


def test_a_failed_unit_stops_both_threads_and_raises_once(tmp_path, monkeypatch):
    monkeypatch.setattr(filecopy, "COPY_UNIT", COPY_PIECE)
    real, calls = filecopy._copy_crc32, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(*args)

    monkeypatch.setattr(filecopy, "_copy_crc32", failing)
    data = RNG.randbytes(20 * COPY_PIECE)
    with _file(tmp_path, data) as src, open(tmp_path / "out.bin", "w+b") as dst:
        with pytest.raises(OSError, match="No space left"):
            copy_range_crc32(src, 0, dst, 0, len(data))
    assert len(calls) < 20  # the units after the failure were left undone


def test_copy_of_a_short_source_fails(tmp_path):
    with _file(tmp_path, RNG.randbytes(1000)) as src, open(tmp_path / "out.bin", "w+b") as dst:
        with pytest.raises(EOFError):
            copy_range_crc32(src, 500, dst, 0, 1000)


PIECES = [(600, 1 << 20), ((1 << 20) + 600, 17), (2 << 20, 900_000)]


def _counting(monkeypatch) -> dict[str, int]:
    """Bytes read for CRCs, by who read them: the check's thread or the caller."""
    read = {"thread": 0, "caller": 0}
    real = filecopy.crc32_range

    def counted(file, start, size, crc=0):
        read["thread" if threading.current_thread().name == "modelmorph-crc32" else "caller"] += size
        return real(file, start, size, crc)

    monkeypatch.setattr(filecopy, "crc32_range", counted)
    return read


def test_shared_check_takes_the_claimed_pieces_from_the_copies(engine, tmp_path, monkeypatch):
    """Pieces claimed before the check starts are never read by it: their CRCs come from the
    copies; the rest (the gaps) is read by the thread; the whole is zip's CRC of the range."""
    data = RNG.randbytes(3 << 20)
    start, end = 512, len(data) - 100
    read = _counting(monkeypatch)
    with _file(tmp_path, data) as f, open(tmp_path / "out.bin", "w+b") as out:
        check = SharedCrc32(f, start, end, PIECES)
        reports = [check.claim(o, n) for o, n in PIECES]
        assert all(reports)
        assert check.claim(*PIECES[0]) is None  # claimed once only
        check.start()
        for (o, n), report in zip(PIECES, reports):
            report(copy_range_crc32(f, o, out, o, n))
        assert check.result() == zlib.crc32(data[start:end])
        assert read["thread"] + read["caller"] == (end - start) - sum(n for _, n in PIECES)


def test_a_flipped_byte_in_a_copied_piece_fails_the_shared_check(tmp_path):
    """The copy checksums the bytes it read: a corrupted one changes the whole."""
    data = bytearray(RNG.randbytes(3 << 20))
    expected = zlib.crc32(data[512:-100])
    data[PIECES[2][0] + 1234] ^= 0x10
    with _file(tmp_path, bytes(data)) as f, open(tmp_path / "out.bin", "w+b") as out:
        check = SharedCrc32(f, 512, len(data) - 100, PIECES)
        reports = [check.claim(o, n) for o, n in PIECES]
        check.start()
        for (o, n), report in zip(PIECES, reports):
            report(copy_range_crc32(f, o, out, o, n))
        assert check.result() != expected
        assert check.result() == zlib.crc32(data[512:-100])


def test_shared_check_reads_what_no_copy_reported(engine, tmp_path, monkeypatch):
    """A claim given up (None) or never reported (a failed write), pieces left unclaimed, and
    pieces that overlap or leave the range: all read by the check itself, never skipped."""
    data = RNG.randbytes(3 << 20)
    start, end = 512, len(data) - 100
    hostile = PIECES + [(700, 10), (end - 5, 50), (0, 100)]  # inside another, past the end, before the start
    with _file(tmp_path, data) as f:
        check = SharedCrc32(f, start, end, hostile)
        assert [check.claim(o, n) is None for o, n in hostile[3:]] == [True, True, True]
        given_up, silent = check.claim(*PIECES[0]), check.claim(*PIECES[1])
        given_up(None)
        check.start()
        assert check.piece_crc32(*PIECES[2]) == zlib.crc32(data[PIECES[2][0]:sum(PIECES[2])])  # the thread's
        assert check.claim(*PIECES[2]) is None  # checked already
        assert check.result() == zlib.crc32(data[start:end])
        assert silent is not None


def test_shared_check_stopped_or_never_started_still_gives_the_whole(tmp_path):
    data = RNG.randbytes(3 << 20)
    with _file(tmp_path, data) as f:
        idle = SharedCrc32(f, 0, len(data), PIECES)
        assert idle.result() == zlib.crc32(data)  # read by the caller
        stopped = SharedCrc32(f, 0, len(data), PIECES)
        stopped.start()
        stopped.stop()
        assert stopped.result() == zlib.crc32(data)
    with _file(tmp_path, data[:1 << 20]) as f:  # shorter than the range: the reading's error
        with pytest.raises(EOFError):
            SharedCrc32(f, 0, len(data), PIECES).result()


def test_read_pieces_from_a_descriptor_a_file_and_memory(tmp_path):
    data = RNG.randbytes(100_000)
    buffer = memoryview(bytearray(4096))
    with _file(tmp_path, data) as f:
        for source in (f.fileno(), f, io.BytesIO(data)):
            got = b"".join(bytes(p) for p in filecopy.read_pieces(source, 777, 50_000, buffer))
            assert got == data[777:50_777]
        with pytest.raises(EOFError, match="ends 1000 bytes early"):
            for _ in filecopy.read_pieces(f, len(data) - 3000, 4000, buffer):
                pass
