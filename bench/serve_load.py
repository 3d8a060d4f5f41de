"""Load on `refsearch serve`, over loopback only: CLIENTS concurrent clients x SEARCHES searches each, sent
to the real command (its own process, uvicorn, 127.0.0.1) on the demo index, against the same searches run
in this process through `Index.search` with the same concurrency and, as the server does, one forward
pass at a time. Prints p50/p95/max latency, throughput and errors of both, first with one client, then
with CLIENTS.

Targets on 2 CPU cores: 0 errors; HTTP p50 <= 1.3x the in-process p50 at the same concurrency.

    python bench/serve_load.py [--index index_builds/demo.index] [--clients 8] [--searches 50] [--k 10]
"""
from __future__ import annotations

import os

# As the test suite does: one thread per library, so that the two sides compete for the cores alike.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import numpy as np  # noqa: E402

from benchlib import REPO, degraded_copy, load_avg, machine  # noqa: E402
from refsearch import Index, build_index  # noqa: E402
from refsearch.recipes import load_recipe  # noqa: E402

TARGET_RATIO = 1.3
BOUNDARY = "refsearch-bench-boundary"


@dataclass
class Run:
    name: str
    latencies: list[float]
    errors: list[str]
    seconds: float

    def row(self) -> str:
        ms = np.array(self.latencies) * 1000 if self.latencies else np.array([np.nan])
        return (f"{self.name:<28} {len(self.latencies) + len(self.errors):>8} {len(self.errors):>6} "
                f"{np.percentile(ms, 50):>8.1f} {np.percentile(ms, 95):>8.1f} {ms.max():>8.1f} "
                f"{len(self.latencies) / self.seconds:>8.1f}")

    @property
    def p50(self) -> float:
        return float(np.percentile(self.latencies, 50))


def ensure_index(path: Path) -> Path:
    if not (path / "manifest.json").exists():
        recipe = load_recipe("demo")
        print(f"building {path} from the demo recipe ...", flush=True)
        build_index(recipe.source, path, recipe.config, progress=False)
    return path


def make_queries(folder: Path) -> list[Path]:
    """The bundled gray queries and gray, cropped, recompressed copies of some demo photos."""
    demo = REPO / "index_builds" / "demo"
    queries = sorted((demo / "queries").glob("*.jpg"))
    for number, photo in enumerate(sorted((demo / "photos").glob("*.jpg"))[::5]):
        path = folder / f"degraded{number}.jpg"
        degraded_copy(photo, short_side=200, quality=80).save(path)
        queries.append(path)
    return queries


def hammer(name: str, clients: int, per_client: int, queries: list[Path],
           one: Callable[[int, Path], None]) -> Run:
    """`clients` threads, each sending `per_client` requests back to back; client c's i-th request is query
    (c + i) mod len(queries)."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        for i in range(per_client):
            started = time.perf_counter()
            try:
                one(number, queries[(number + i) % len(queries)])
            except Exception as exc:  # counted, not fatal: the point is to see them
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return Run(name, latencies, errors, time.perf_counter() - started)


def in_process(index: Index, k: int) -> Callable[[int, Path], None]:
    # What the server does: one forward pass at a time, first come first served. (A plain lock would not
    # do: a thread releasing it takes it straight back, and the others starve for seconds.)
    network = ThreadPoolExecutor(1)

    def search(query: Path) -> None:
        if not index.search(query, k=k).results:
            raise RuntimeError("no results")

    def one(_client: int, query: Path) -> None:
        network.submit(search, query).result()
    return one


def multipart(query: Path) -> bytes:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{query.name}\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n")
    return head.encode() + query.read_bytes() + f"\r\n--{BOUNDARY}--\r\n".encode()


def over_http(url: str, k: int, clients: int, queries: list[Path]) -> Callable[[int, Path], None]:
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1", "loopback only"
    bodies = {query: multipart(query) for query in queries}
    connections = [http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
                   for _ in range(clients)]

    def one(client: int, query: Path) -> None:
        connection = connections[client]  # one keep-alive connection per client, as a browser keeps
        connection.request("POST", f"/api/search?k={k}", body=bodies[query],
                           headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
        if not json.loads(body)["results"]:
            raise RuntimeError("no results")
    return one


def start_server(index_path: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "refsearch", "serve", "--index", str(index_path),
                                "--host", "127.0.0.1", "--port", "0", "--no-access-log"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                               cwd=REPO)
    line = process.stdout.readline()
    if not line.startswith("refsearch serve: http://127.0.0.1:"):
        process.kill()
        sys.exit(f"the server did not start: {line!r}")
    return process, line.split()[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=REPO / "index_builds" / "demo.index")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--searches", type=int, default=50, help="searches per client")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    print(f"machine: {machine()}; load average at start {load_avg()}")
    index_path = ensure_index(args.index)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as scratch:
        queries = make_queries(Path(scratch))
        print(f"{len(queries)} query photos; {args.clients} clients x {args.searches} searches, k={args.k}\n",
              flush=True)
        # The two sides run one after the other, never at once: each has the machine to itself.
        with Index.open(index_path) as index:
            search = in_process(index, args.k)
            hammer("warm-up", 1, 5, queries, search)
            runs.append(hammer("in process, 1 client", 1, args.searches, queries, search))
            runs.append(hammer(f"in process, {args.clients} clients", args.clients, args.searches, queries,
                               search))
        process, url = start_server(index_path)
        try:
            hammer("warm-up", 1, 5, queries, over_http(url, args.k, 1, queries))
            runs.append(hammer("HTTP, 1 client", 1, args.searches, queries,
                               over_http(url, args.k, 1, queries)))
            runs.append(hammer(f"HTTP, {args.clients} clients", args.clients, args.searches, queries,
                               over_http(url, args.k, args.clients, queries)))
        finally:
            process.terminate()
            process.wait(30)
    print(f"{'':<28} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'req/s':>8}")
    for run in runs:
        print(run.row())
    single = runs[2].p50 / runs[0].p50
    loaded = runs[3].p50 / runs[1].p50
    errors = sum(len(run.errors) for run in runs)
    print(f"\nHTTP p50 / in-process p50: {single:.2f}x with one client, {loaded:.2f}x with {args.clients}"
          f" (target <= {TARGET_RATIO}x); errors {errors} (target 0)")
    for run in runs:
        for error in run.errors[:3]:
            print(f"  {run.name}: {error}")
    print("targets met" if loaded <= TARGET_RATIO and errors == 0 else "TARGETS MISSED")


if __name__ == "__main__":
    main()
