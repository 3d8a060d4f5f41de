"""What checking an index costs: `refsearch verify` on synthetic indexes of N images (filled as
bench/scale.py fills them, through the writer), its parts timed alone, and the checks opening makes,
each against a baseline measured in the same run.

Per size it prints: the index's bytes; the baseline of reading every recorded file once without checking
anything (same chunks as verify); the checksums of every recorded file (CRC-32, and its rate); LMDB's
page walk (py-lmdb's offline verifier); verify's total and what is left of it once both are taken away
(reading the records and checking them against the segments, FAISS files and class statistics); then
`Index.open` (modules imported) as the baseline for the checks it makes: the sizes of the generation's
files (a stat each), and those with the checksums of the files it reads whole (as `info` and writers
check them too).
Before the sizes, the rate of CRC-32 and of three hashes over a chunk of bytes in memory.

The index was just written, so the page cache holds it: the read and checksum rates are the CPU's; from
a cold disk both are the disk's read rate instead. The steps taking a second or less are timed three
times each and the fastest kept; verify and the page walk once.

    python bench/verify_cost.py [--sizes 100000,300000] [--folder /tmp/refsearch-verify]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

HASHED_BYTES = 256 << 20
# The machine may be shared: the quick steps are timed this many times, and the fastest kept.
REPEATS = 3


def _seconds(work, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def hash_rates() -> dict[str, float]:
    """GB/s of CRC-32 and of blake2b, sha256 and md5 on one core, over one chunk of random bytes in memory
    (of the size verify reads a file by) fed to each again and again."""
    from refsearch.integrity import CHUNK_BYTES

    chunk = os.urandom(CHUNK_BYTES)
    feeds = HASHED_BYTES // CHUNK_BYTES

    def crc32():
        crc = 0
        for _ in range(feeds):
            crc = zlib.crc32(chunk, crc)

    def hashed(name):
        def run():
            digest = hashlib.new(name)
            for _ in range(feeds):
                digest.update(chunk)
        return run

    works = {"crc32": crc32, **{name: hashed(name) for name in ("blake2b", "sha256", "md5")}}
    return {name: feeds * CHUNK_BYTES / 1e9 / _seconds(work, REPEATS) for name, work in works.items()}


def _read_only(paths: list[Path]) -> None:
    """Every byte of `paths` read as `record_of_file` reads it, and nothing else done with it."""
    from refsearch.integrity import CHUNK_BYTES

    buffer = bytearray(CHUNK_BYTES)
    for path in paths:
        with open(path, "rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass


def measure(folder: Path) -> dict:
    from lmdb.verify import verify as walk_lmdb

    import refsearch
    from refsearch import layout
    from refsearch.integrity import record_of_file
    from refsearch.manifest import Manifest
    from refsearch.verify import verify_index

    manifest = Manifest.load(folder)
    paths = [folder / name for name in manifest.file_records()]
    out = {"recorded_bytes": sum(p.stat().st_size for p in paths)}
    out["read_s"] = _seconds(lambda: _read_only(paths), REPEATS)
    out["checksums_s"] = _seconds(lambda: [record_of_file(p) for p in paths], REPEATS)
    problems = []
    out["lmdb_walk_s"] = _seconds(lambda: problems.extend(walk_lmdb(str(folder / layout.METADATA))))
    assert not problems, problems
    reports = []
    out["verify_s"] = _seconds(lambda: reports.append(verify_index(folder)))
    assert reports[0].sound, reports[0].damaged
    out["rest_s"] = out["verify_s"] - out["checksums_s"] - out["lmdb_walk_s"]
    refsearch.Index.open(folder).close()  # the modules a search needs, imported once
    out["open_ms"] = _seconds(lambda: refsearch.Index.open(folder).close(), REPEATS) * 1000
    out["open_sizes_ms"] = _seconds(lambda: manifest.check_files(folder), REPEATS) * 1000
    out["open_sizes_and_small_checksums_ms"] = _seconds(lambda: manifest.check_files(folder, whole=True),
                                                        REPEATS) * 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,300000")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/refsearch-verify"))
    parser.add_argument("--child", nargs=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child[0]))))
        return
    import scale
    from benchlib import load_avg, machine

    print(f"machine: {machine()}; load average at start {load_avg()}")
    rates = hash_rates()
    print("GB/s over a chunk in memory, one core: " + ", ".join(f"{k} {v:.2f}" for k, v in rates.items()))
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        folder = args.folder / f"{size}.index"
        scale._child("--child", "fill", str(folder), str(size))
        result = scale.subprocess.run([sys.executable, __file__, "--child", str(folder)], capture_output=True,
                                      text=True)
        if result.returncode:
            sys.exit(result.stderr)
        row = {"images": size, "index_bytes": scale._disk_bytes(folder),
               **json.loads(result.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(json.dumps(row), flush=True)
        shutil.rmtree(folder)
    print(f"load average at the end {load_avg()}\n")
    print(f"{'images':>9} {'index GB':>8} {'read s (GB/s)':>14} {'checksums s (GB/s)':>18} "
          f"{'LMDB walk s':>11} {'verify s':>8} {'rest s':>6} {'open ms':>7} {'sizes ms':>8} "
          f"{'+checksums ms':>13}")
    for r in rows:
        gigabytes = r["recorded_bytes"] / 1e9
        print(f"{r['images']:>9} {r['index_bytes'] / 1e9:>8.2f} "
              f"{r['read_s']:>6.2f} ({gigabytes / r['read_s']:>5.2f}) "
              f"{r['checksums_s']:>9.2f} ({gigabytes / r['checksums_s']:>5.2f}) {r['lmdb_walk_s']:>11.2f} "
              f"{r['verify_s']:>8.2f} {r['rest_s']:>6.2f} {r['open_ms']:>7.1f} {r['open_sizes_ms']:>8.2f} "
              f"{r['open_sizes_and_small_checksums_ms']:>13.2f}")


if __name__ == "__main__":
    main()
