"""Runs one index operation in this process and kills it with SIGKILL at a chosen point: the `call`-th
call of `target` (module:attribute path), `when` before or after the real call.

    python crash_driver.py '{"op": "build", "source": ..., "index": ..., "target": "refsearch.store:MetadataWriter.add",
                             "call": 2, "when": "after"}'

Used by tests/refsearch/test_crash_safety.py; the tiny backbone keeps each run short.
"""
from __future__ import annotations

import functools
import importlib
import json
import os
import signal
import sys

import tiny_backbone  # noqa: F401  (registers the backbone)

import refsearch


def _arm(target: str, call: int, when: str) -> None:
    module_name, attribute = target.split(":")
    owner = importlib.import_module(module_name)
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    real = getattr(owner, name)
    calls = 0

    @functools.wraps(real)
    def armed(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == call and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if calls == call and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, staticmethod(armed) if isinstance(owner.__dict__.get(name), staticmethod) else armed)


def main() -> None:
    job = json.loads(sys.argv[1])
    if job.get("target"):
        _arm(job["target"], job["call"], job["when"])
    if job["op"] == "build":
        refsearch.build_index(job["source"], job["index"], tiny_backbone.CONFIG, batch_size=2, workers=0, streams=1,
                              progress=False)
    elif job["op"] == "remove":
        refsearch.remove_images(job["index"], job["ids"])
    elif job["op"] == "compact":
        refsearch.compact_index(job["index"])
    elif job["op"] == "hold-lock":
        from refsearch.writer import IndexWriter

        with IndexWriter.open(job["index"], command="test holder"):
            print("locked", flush=True)
            sys.stdin.readline()


if __name__ == "__main__":
    main()
