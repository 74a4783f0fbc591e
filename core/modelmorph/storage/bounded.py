"""Running a risky library call with a bound on its time and memory.

libhdf5 can loop forever, or allocate what a damaged file declares, on a few corruptions it
does not detect (a global heap object of size 0 under a variable-length string attribute);
nothing in-process can interrupt it. :func:`run_bounded` runs such a call in a forked child
with an address-space limit and waits for its answer at most so long: the child is killed
past it. Where ``fork`` does not exist the call runs in-process, unbounded.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import time
from typing import Any, Callable

#: How much more address space than the parent's the child may take.
EXTRA_MEMORY = 512 << 20


class Exceeded(Exception):
    """The call did not finish in time or ran out of memory (the message says which)."""


def run_bounded(work: Callable[[], Any], seconds: float) -> Any:
    """``work()``'s result, computed in a child process given ``seconds`` and
    :data:`EXTRA_MEMORY` more address space than this one; the result must pickle. An
    exception ``work`` raises is re-raised here as :class:`Exceeded` when it is a
    ``MemoryError``; ``work`` should catch what it expects and return it as data."""
    if not hasattr(os, "fork"):
        return work()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer through the pipe, then leave without running any cleanup
        status = 0
        try:
            os.close(read_end)
            _limit_memory()
            try:
                answer = ("ok", work())
            except MemoryError:
                answer = ("memory", None)
            data = pickle.dumps(answer)
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view):]
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    try:
        data = _read_all(read_end, time.monotonic() + seconds)
    finally:
        os.close(read_end)
        if data is None:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if data is None:
        raise Exceeded(f"did not finish in {seconds:g} s")
    if not data:
        raise Exceeded("failed without an answer")
    kind, value = pickle.loads(data)  # our own child's answer
    if kind == "memory":
        raise Exceeded(f"needed more than {EXTRA_MEMORY >> 20} MiB of memory")
    return value


def _read_all(fd: int, deadline: float) -> bytes | None:
    """Everything the child writes until it closes the pipe, or None past ``deadline``."""
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _limit_memory() -> None:
    import resource

    try:
        with open("/proc/self/status") as status:
            size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size + EXTRA_MEMORY
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft == resource.RLIM_INFINITY or limit < soft:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
