"""Running modelmorph on hostile files the way a user would, with limits, and mutating fixtures.

Shared by the regression tests of hostile inputs (tests/test_hardening.py), the bounded fuzzer
of the test-suite (tests/test_fuzz.py) and the long-running one (tests/tools/fuzz.py).

Every run is a ``python -m modelmorph`` subprocess with an address-space limit and a timeout;
its verdict is acceptable when it exits 0, or prints exactly one ``modelmorph: error`` line and
exits 3 or 4 leaving nothing behind, without a traceback, a signal, or a warning line, an
error saying it ran out of memory (its address space is limited), or a file opened outside the
mutant's folder and the ``--arch`` file (an audit hook in the run reports each one).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"

MEMORY_LIMIT = 1 << 30  # address space of one run
TIME_LIMIT = 30.0  # seconds of one run


@dataclass
class Run:
    argv: list[str]
    code: int | None  # None: killed at the timeout; negative: a signal
    stderr: str
    seconds: float
    max_rss: int  # bytes

    def problem(self, outputs: list[Path] = ()) -> str | None:
        """Why this run is not acceptable, or None."""
        outside = next((line for line in self.stderr.splitlines() if line.startswith(OUTSIDE_MARK)), None)
        if outside is not None:
            return "outside read: " + outside[len(OUTSIDE_MARK):].strip()
        if self.code is None:
            return f"still running after {TIME_LIMIT:.0f} s"
        if self.code < 0:
            return f"killed by signal {-self.code}"
        if "Traceback" in self.stderr:
            return "traceback"
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        if self.code == 0:
            return None
        if "not enough memory" in self.stderr:  # the address-space limit was hit: a memory blow-up
            return "memory: the run needed more than its address-space limit"
        if self.code not in (3, 4):
            return f"exit {self.code}"
        if len(lines) != 1 or not lines[0].startswith("modelmorph: error: "):
            return f"{len(lines)} lines on stderr"
        left = [str(p) for p in outputs if os.path.lexists(p)]
        if left:
            return f"output left behind: {left}"
        return None


#: What a run prints (then the path) when it opens a file outside what it may read.
OUTSIDE_MARK = "modelmorph-fuzz: outside read:"
#: Folders every run may read: the interpreter's and the installed code's; devices and /proc.
_ALWAYS_ALLOWED = sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, str(TESTS.parent / "core"),
                          str(TESTS.parent / "plugins"), "/proc", "/dev", "/sys", "/etc", "/usr", "/lib"})

#: What each run executes: its limits set first, then ``python -m modelmorph``; its own peak
#: resident memory (VmHWM, which starts afresh at exec, unlike ru_maxrss, which inherits the
#: forking test process's) is written to the file named by the second argument. With
#: ``MODELMORPH_FUZZ_ALLOW`` set (paths), an audit hook reports every file opened outside them
#: and the folders above (the model's reader must not read beside the model).
_RUNNER = """
import os, resource, runpy, sys
memory, report = int(sys.argv[1]), sys.argv[2]
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
_allowed = [p for p in os.environ.pop("MODELMORPH_FUZZ_ALLOW", "").split(os.pathsep) if p]
if _allowed:
    _allowed = tuple(p if p.endswith("-") else os.path.realpath(p) for p in [*_allowed, report])
    _told = set()
    def _audit(event, args, _realpath=os.path.realpath, _sep=os.sep, _write=sys.__stderr__.write):
        if event != "open" or not isinstance(args[0], (str, bytes)) or not args[0]:
            return
        path = args[0].decode("utf-8", "replace") if isinstance(args[0], bytes) else args[0]
        try:
            real = _realpath(path)
        except (ValueError, OSError):
            return
        if any(real == a or real.startswith(a if a.endswith("-") else a.rstrip(_sep) + _sep) for a in _allowed) \\
                or real in _told:
            return
        _told.add(real)
        _write("modelmorph-fuzz: outside read: " + real + "\\n")
    sys.addaudithook(_audit)
sys.argv = ["modelmorph"] + sys.argv[3:]
try:
    runpy.run_module("modelmorph", run_name="__main__", alter_sys=True)
finally:
    with open("/proc/self/status") as status, open(report, "w") as out:
        out.write(next((line.split()[1] for line in status if line.startswith("VmHWM:")), "0"))
"""


def run_cli(*argv: str | Path, memory: int = MEMORY_LIMIT, timeout: float = TIME_LIMIT,
            env: dict[str, str] | None = None, allow: list[Path] | None = None) -> Run:
    """``modelmorph ARGV`` in a subprocess limited to ``memory`` bytes of address space and
    ``timeout`` seconds (then killed: ``code`` None); its peak resident memory is measured.
    With ``allow``, opening any file outside those paths (and the interpreter's) is reported."""
    args = [str(a) for a in argv]
    environ = dict(os.environ, **(env or {}))
    if allow is not None:
        temp = [os.path.join(tempfile.gettempdir(), "modelmorph-")]  # a deflated weights member's copy
        environ["MODELMORPH_FUZZ_ALLOW"] = os.pathsep.join([*map(str, allow), *_ALWAYS_ALLOWED, *temp])
    environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # each BLAS thread reserves address space
    environ.pop("MODELMORPH_DEBUG", None)
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as report:
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-c", _RUNNER, str(memory), report.name, *args],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=environ,
                                start_new_session=True)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        seconds = time.monotonic() - start
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
        kib = report.read().strip()
    return Run(args, code, text, seconds, int(kib) * 1024 if kib.isdigit() else 0)


# -- mutations ------------------------------------------------------------------------------------

def _hdf5_structures(data: bytes) -> list[int]:
    """Offsets of HDF5 structures worth hitting: signatures of B-trees, heaps, symbol nodes,
    object headers (version-1 prefixes are found through their messages' neighbourhood)."""
    found = []
    for sig in (b"TREE", b"HEAP", b"SNOD", b"GCOL", b"OHDR", b"OCHK", b"FRHP", b"FHDB", b"BTHD", b"BTLF",
                b"\x89HDF"):
        start = 0
        while (i := data.find(sig, start)) >= 0:
            found.append(i)
            start = i + 1
    return found


def mutate_bytes(data: bytes, rng: random.Random, hot: list[int]) -> bytes:
    """A few structural changes near ``hot`` offsets (or anywhere): bit flips, boundary
    integers written over addresses and sizes, truncation, copied spans."""
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if hot and rng.random() < 0.7:
            pos = min(len(out) - 1, max(0, rng.choice(hot) + rng.randrange(0, 64)))
        else:
            pos = rng.randrange(len(out))
        kind = rng.randrange(6)
        if kind == 0:
            out[pos] ^= 1 << rng.randrange(8)
        elif kind == 1:
            out[pos] = rng.choice((0, 1, 0x7F, 0x80, 0xFF))
        elif kind == 2:  # an integer field: 2, 4 or 8 bytes of a boundary value
            width = rng.choice((2, 4, 8))
            value = rng.choice((0, 1, 2**(8 * width - 1), 2**(8 * width) - 1, len(out), len(out) * 64,
                                rng.randrange(2**(8 * width))))
            value &= (1 << 8 * width) - 1
            out[pos:pos + width] = value.to_bytes(width, "little")[:len(out[pos:pos + width])]
        elif kind == 3:
            del out[rng.randrange(len(out) // 2, len(out)):]
        elif kind == 4:  # copy a span elsewhere (a structure pointing at another's bytes)
            src, n = rng.randrange(len(out)), rng.randrange(1, 64)
            out[pos:pos + n] = out[src:src + n]
        else:
            out[pos] = (out[pos] + rng.choice((-1, 1))) & 0xFF
        if not out:
            out = bytearray(data[:1])
    return bytes(out)


def mutate_json(text: bytes, rng: random.Random) -> bytes:
    """JSON-level changes: values replaced by other types or extremes, keys dropped, nesting."""
    import json

    try:
        doc = json.loads(text)
    except ValueError:
        return mutate_bytes(text, rng, [])
    nodes: list[tuple[object, object]] = []  # (container, key)

    def walk(value: object) -> None:
        if len(nodes) > 20000:
            return
        if isinstance(value, dict):
            for k, v in value.items():
                nodes.append((value, k))
                walk(v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                nodes.append((value, i))
                walk(v)

    walk(doc)
    for _ in range(rng.choice((1, 1, 2, 3))):
        if not nodes:
            break
        container, key = rng.choice(nodes)
        try:
            current = container[key]
        except (KeyError, IndexError):
            continue
        choice = rng.randrange(9)
        if choice == 0 and isinstance(container, dict):
            del container[key]
        else:
            container[key] = rng.choice([
                None, True, 0, -1, 2**63, 1e308, float("nan"), "", "x" * 300, [], {}, [current], {"a": current},
                "../../etc/passwd", [None] * 3, -2**31, "float64", "bfloat16", "string",
            ]) if choice < 8 else current
    try:
        return json.dumps(doc).encode()
    except (ValueError, TypeError):
        return text


def mutate_zip(data: bytes, rng: random.Random) -> bytes:
    """A ``.keras`` zip: its JSON members mutated, or the zip structures themselves."""
    import io

    choice = rng.randrange(3)
    if choice == 0:
        hot = [i for sig in (b"PK\x01\x02", b"PK\x03\x04", b"PK\x05\x06") for i in _find_all(data, sig)]
        return mutate_bytes(data, rng, hot)
    try:
        src = zipfile.ZipFile(io.BytesIO(data))
        members = [(info, src.read(info)) for info in src.infolist()]
    except Exception:
        return mutate_bytes(data, rng, [])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for info, content in members:
            if choice == 1 and info.filename.endswith(".json"):
                content = mutate_json(content, rng)
            elif choice == 2 and info.filename.endswith(".h5") and rng.random() < 0.8:
                content = mutate_bytes(content, rng, _hdf5_structures(content))
            zf.writestr(info, content)
    return out.getvalue()


def _find_all(data: bytes, sig: bytes) -> list[int]:
    found, start = [], 0
    while (i := data.find(sig, start)) >= 0:
        found.append(i)
        start = i + 1
    return found


def _varint_offsets(data: bytes) -> list[int]:
    # Bytes with the continuation bit set start or continue varints (SSTable handles, bundle
    # entries, protobuf tags): a cheap way to aim at them.
    return [i for i, b in enumerate(data[:65536]) if b & 0x80][:4096] or [0]


# -- the corpus -----------------------------------------------------------------------------------

@dataclass
class Seed:
    """A fixture to mutate: ``files`` (relative names in a folder) of which ``main`` is given
    to ``convert``; ``kind`` chooses the mutation; ``target`` the output's name."""

    name: str
    files: dict[str, bytes]
    main: str
    kind: str  # hdf5, zip, json, ckpt, savedmodel
    target: str
    extra: tuple[str, ...] = ()


def _folder(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def latest_h5(path: Path) -> bytes:
    """The fixture ``path`` rewritten by h5py with ``libver='latest'`` (version 2+ structures:
    outside the plain subset, so libhdf5 parses it)."""
    import h5py

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "latest.h5"
        with h5py.File(path, "r") as src, h5py.File(out, "w", libver="latest") as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            for name in src:
                src.copy(src[name], dst, name=name)
        return out.read_bytes()


def seeds() -> list[Seed]:
    k3, k2, tf = FIXTURES / "keras3", FIXTURES / "tf_keras", FIXTURES / "tf"
    out = [
        Seed("keras3.keras", {"m.keras": (k3 / "mlp_adam.keras").read_bytes()}, "m.keras", "zip", "out.h5"),
        Seed("keras3-cnn.keras", {"m.keras": (k3 / "seq_cnn_bn.keras").read_bytes()}, "m.keras", "zip", "out.h5"),
        Seed("weights.h5", {"m.weights.h5": (k3 / "mlp_adam.weights.h5").read_bytes()}, "m.weights.h5", "hdf5",
             "out.weights.h5", ("--arch", str(k3 / "mlp_adam.json"))),
        Seed("legacy.h5", {"m.h5": (k2 / "mlp_adam.h5").read_bytes()}, "m.h5", "hdf5", "out.keras"),
        Seed("legacy-rnn.h5", {"m.h5": (k2 / "embed_lstm_bigru.h5").read_bytes()}, "m.h5", "hdf5", "out.keras"),
        Seed("legacy-weights.h5", {"m.h5": (k2 / "mlp_adam_weights.h5").read_bytes()}, "m.h5", "hdf5", "out.keras",
             ("--arch", str(k2 / "mlp_adam.json"))),
        Seed("keras3.json", {"m.json": (k3 / "mlp_adam.json").read_bytes()}, "m.json", "json", "out.json"),
        Seed("keras2.json", {"m.json": (k2 / "embed_lstm_bigru.json").read_bytes()}, "m.json", "json", "out.json"),
        Seed("ckpt", {f"ckpt/{k}": v for k, v in _folder(k2 / "ckpt" / "mlp_adam").items()}, "ckpt/ckpt", "ckpt",
             "out.weights.h5", ("--arch", str(k2 / "mlp_adam.json"))),
        Seed("tf-module", {f"ckpt/{k}": v for k, v in _folder(tf / "module_ckpt").items() if k.startswith("ckpt.")},
             "ckpt/ckpt", "ckpt", "out/ckpt", ("--to", "tf-checkpoint")),
    ]
    try:
        latest = latest_h5(k2 / "mlp_adam.h5")
    except ImportError:
        latest = None
    if latest is not None:
        out.append(Seed("legacy-latest.h5", {"m.h5": latest}, "m.h5", "hdf5", "out.keras"))
    sm = FIXTURES / "savedmodel" / "mlp_adam"
    if sm.is_dir():
        out.append(Seed("savedmodel", {f"sm/{k}": v for k, v in _folder(sm).items()}, "sm", "savedmodel", "out.keras"))
    return out


def mutate(seed: Seed, rng: random.Random) -> dict[str, bytes]:
    """A mutated copy of the seed's files (one file changed)."""
    files = dict(seed.files)
    if seed.kind == "zip":
        files[seed.main] = mutate_zip(files[seed.main], rng)
        return files
    if seed.kind == "json":
        data = files[seed.main]
        files[seed.main] = mutate_json(data, rng) if rng.random() < 0.6 else mutate_bytes(data, rng, [])
        return files
    name = rng.choice(sorted(files))
    data = files[name]
    if not data:
        return files
    if seed.kind == "hdf5":
        files[name] = mutate_bytes(data, rng, _hdf5_structures(data))
    elif name.endswith((".json", "checkpoint")) and rng.random() < 0.5:
        files[name] = mutate_json(data, rng) if name.endswith(".json") else mutate_bytes(data, rng, [])
    else:  # SSTable blocks, varints, bundle entries, protobuf bytes
        hot = _varint_offsets(data)
        if len(data) > 48:
            hot.append(len(data) - 48)  # an SSTable footer: block handles and the magic
        files[name] = mutate_bytes(data, rng, hot)
    return files


def run_mutant(seed: Seed, files: dict[str, bytes], workdir: Path, **limits) -> tuple[Run, str | None]:
    """Write ``files`` into a fresh folder under ``workdir``, convert, judge."""
    folder = Path(tempfile.mkdtemp(dir=workdir))
    try:
        for name, data in files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        target = folder / seed.target
        target.parent.mkdir(parents=True, exist_ok=True)
        before = {p for p in folder.rglob("*")}
        arch = [Path(seed.extra[i + 1]) for i, a in enumerate(seed.extra[:-1]) if a == "--arch"]
        run = run_cli("convert", folder / seed.main, target, *seed.extra, allow=[folder, *arch], **limits)
        problem = run.problem()
        if problem is None and run.code != 0:
            left = sorted(str(p.relative_to(folder)) for p in set(folder.rglob("*")) - before)
            if left:
                problem = f"output left behind: {left}"
        return run, problem
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def keep(seed: Seed, files: dict[str, bytes], where: Path, label: str) -> Path:
    """Save a failing case for replay."""
    folder = where / label
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def fuzz(seconds: float, seed_value: int, workdir: Path, keep_dir: Path | None = None,
         log=lambda *a: None, max_runs: int | None = None,
         counts: dict[str, int] | None = None) -> tuple[int, list[tuple[str, int, str, str]]]:
    """Mutate every seed in turn for ``seconds`` (and at most ``max_runs`` mutants);
    (runs, [(seed, iteration, problem, stderr)]). ``counts`` (if given) gets the runs per seed."""
    corpus = seeds()
    rng = random.Random(seed_value)
    runs, failures = 0, []
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline and (max_runs is None or i < max_runs):
        seed = corpus[i % len(corpus)]
        case_rng = random.Random(rng.getrandbits(64))
        files = mutate(seed, case_rng)
        run, problem = run_mutant(seed, files, workdir)
        runs += 1
        if counts is not None:
            counts[seed.name] = counts.get(seed.name, 0) + 1
        if problem is not None:
            failures.append((seed.name, i, problem, run.stderr.strip()[-2000:]))
            log(f"FINDING {seed.name} #{i}: {problem}: {run.stderr.strip()[-300:]}")
            if keep_dir is not None:
                keep(seed, files, keep_dir, f"{seed.name}-{seed_value}-{i}")
        i += 1
    return runs, failures


__all__ = ["Run", "run_cli", "mutate_bytes", "mutate_json", "mutate_zip", "seeds", "mutate", "run_mutant", "fuzz"]
