"""Mutation fuzzer of every reader, for long runs: ``python tests/tools/fuzz.py --minutes 60``.

Mutates the fixtures of each format structurally (tests/fuzzing.py: HDF5 structures, also a
file written with ``libver='latest'`` that libhdf5 parses; zip directories and JSON members;
SSTable blocks, varints and bundle entries; protobuf bytes), converts each mutant in a limited
subprocess and reports every run that is not exit 0 or one ``modelmorph: error`` line with exit
3/4 (traceback, signal, hang past 30 s, address space past 1 GB, several lines, output left, a file
opened outside the model: an audit hook in each run reports it).
Failing cases are kept under ``--keep`` for replay. Exit status 1 when anything was found.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fuzzing  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--keep", type=Path, default=Path("fuzz-findings"), help="where failing cases are saved")
    args = parser.parse_args()
    print(f"fuzzing for {args.minutes} min, seed {args.seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="modelmorph-fuzz-") as work:
        started = time.monotonic()
        counts: dict[str, int] = {}
        runs, failures = fuzzing.fuzz(args.minutes * 60, args.seed, Path(work), args.keep,
                                      log=lambda line: print(line, flush=True), counts=counts)
        elapsed = time.monotonic() - started
    kinds: dict[str, int] = {}
    for _, _, problem, _ in failures:
        kinds[problem.split(":")[0]] = kinds.get(problem.split(":")[0], 0) + 1
    print(f"{runs} runs in {elapsed / 60:.1f} min ({runs / max(elapsed, 1):.1f}/s), {len(failures)} findings"
          + (f": {kinds}" if kinds else ""), flush=True)
    print("runs per seed: " + ", ".join(f"{name} {n}" for name, n in counts.items()), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
