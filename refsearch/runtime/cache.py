"""Exported graphs on disk, and the way to a RuntimeNetwork: its cached graph, else the backbone exported
(torch, once) and stored.

The folder is $REFSEARCH_CACHE, else $XDG_CACHE_HOME/refsearch, else ~/.cache/refsearch; graphs lie in its
`graphs/`, one file per key: backbone, weights fingerprint, input size, the outputs (all of them, in one
graph), the runtime and its version, refsearch's version, and this file format. A file is MAGIC, the
header's length (4 bytes, little-endian), a JSON header (format, key, what the network is, the payload's
length and CRC-32, how it was exported), then the ONNX payload. A file whose magic, header, key, length or
checksum does not hold up is never run: a torn one (cut short, or damaged), a stale one (another format or
runtime version) and a foreign one (another key, or not ours) are exported again and replaced.

Writers put the file under a name of their own in the same folder, fsync it and rename it over the final
name, so a reader sees the old file or the new one whole, whoever else writes at the same time. An
exclusive `flock` on NAME.lock makes a second process wait for the first one's export and then read its
file, rather than export too. Where the folder cannot be written, the graph is exported for the process
alone, kept in memory, and the network's `note` says so. A backbone that cannot be exported leaves
NAME.failed, its GraphExportError, so that later processes run it on torch at once instead of loading
and tracing it again.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import GraphExportError
from .network import RUNTIME, RUNTIME_VERSION, NetworkInfo, RuntimeNetwork

try:
    import fcntl
except ImportError:  # Windows: no flock; renames alone keep files whole, two exports may both run
    fcntl = None

if TYPE_CHECKING:  # torch is imported only to export
    from ..backbones import Backbone

FORMAT = "refsearch-graph/1"
OUTPUTS = "logits, global descriptor, cells, feature maps"
MAGIC = b"RSGRAPH\n"
CACHE_VARIABLE = "REFSEARCH_CACHE"
_HEADER_LENGTH = 4
_MAX_HEADER = 1 << 20


def cache_folder() -> Path:
    """Where refsearch keeps what it can rebuild: $REFSEARCH_CACHE, else $XDG_CACHE_HOME/refsearch, else
    ~/.cache/refsearch."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "refsearch"


@dataclass(frozen=True)
class GraphKey:
    """Which network: the backbone's name, weights fingerprint and input size, all three known from an
    index's configuration without loading the weights."""

    backbone: str
    fingerprint: str
    input_size: int

    @classmethod
    def of(cls, backbone: Backbone) -> GraphKey:
        return cls(backbone.name, backbone.fingerprint, backbone.input_size)

    def to_dict(self) -> dict:
        # refsearch's version too: a release may change how a backbone computes its outputs.
        return {**asdict(self), "outputs": OUTPUTS, "format": FORMAT, "runtime": RUNTIME,
                "runtime_version": RUNTIME_VERSION, "refsearch": __version__}

    def file_name(self) -> str:
        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", self.backbone)[:64]
        digest = zlib.crc32(json.dumps(self.to_dict(), sort_keys=True).encode())
        return f"{readable}-{self.input_size}px-{self.fingerprint[:16]}-{digest:08x}.onnx.graph"

    def matches(self, info: NetworkInfo) -> bool:
        return (info.name, info.fingerprint, info.input_size) == (self.backbone, self.fingerprint, self.input_size)


def graph_path(key: GraphKey, folder: Path | None = None) -> Path:
    return (cache_folder() if folder is None else Path(folder)) / "graphs" / key.file_name()


def open_network(key: GraphKey, load_backbone: Callable[[], Backbone], folder: Path | None = None) -> RuntimeNetwork:
    """The network `key` names, from its cached graph; else `load_backbone()` (the backbone registered
    under the key's name, on CPU in float32, with the key's weights fingerprint and input size) is
    exported, the graph stored, and run. Raises GraphExportError for a backbone that cannot be exported
    (now, or remembered from an earlier try), ConfigMismatchError for a backbone that is not the key's."""
    path = graph_path(key, folder)
    cached, problem = read_graph(path, key)
    if cached is not None:
        return RuntimeNetwork(*cached)
    failed = read_failure(path)
    if failed is not None:
        raise failed
    with contextlib.ExitStack() as held:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            held.enter_context(_exclusive(path.with_name(path.name + ".lock")))
        except OSError as exc:
            exported = _export(key, load_backbone)
            return RuntimeNetwork(exported.onnx, exported.info, note=(
                f"the graph cache {path.parent} cannot be written ({exc.strerror or exc}): {key.backbone} was "
                f"exported for this process only; set {CACHE_VARIABLE} to a writable folder"))
        cached, _ = read_graph(path, key)  # another process may have stored it while this one waited
        if cached is not None:
            return RuntimeNetwork(*cached)
        try:
            exported = _export(key, load_backbone)
        except GraphExportError as exc:
            with contextlib.suppress(OSError):
                write_failure(path, exc)
            raise
        note = f"the cached graph {path} was {problem}, and was exported again" if problem else ""
        try:
            write_graph(path, key, exported.onnx, exported.info, exported.exporter)
        except OSError as exc:
            note = (f"the graph of {key.backbone} could not be stored in {path.parent} ({exc.strerror or exc}): "
                    "it was exported for this process only")
        return RuntimeNetwork(exported.onnx, exported.info, note=note)


def _export(key: GraphKey, load_backbone: Callable[[], Backbone]):
    from ..errors import ConfigMismatchError
    from .graph import export_graph

    backbone = load_backbone()
    # The name is the registry's key the backbone was loaded by; the weights and size are what it computes.
    loaded = (backbone.fingerprint, backbone.input_size)
    if loaded != (key.fingerprint, key.input_size):
        raise ConfigMismatchError(
            f"the backbone loaded to export {key.backbone} (weights {key.fingerprint}, {key.input_size} px) has "
            f"weights {loaded[0]} at {loaded[1]} px", "load the weights the index was built with")
    exported = export_graph(backbone)
    return replace(exported, info=replace(exported.info, name=key.backbone))


def read_graph(path: Path, key: GraphKey) -> tuple[tuple[bytes, NetworkInfo] | None, str]:
    """(the ONNX payload and what it computes, "") when `path` holds `key`'s graph whole; else (None, what
    is wrong with it: "" when there is no file)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, ""
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    start = len(MAGIC) + _HEADER_LENGTH
    if len(data) < start or not data.startswith(MAGIC):
        return None, "not a refsearch graph"
    length = int.from_bytes(data[len(MAGIC):start], "little")
    try:
        if length > _MAX_HEADER:
            raise ValueError("header too long")
        header = json.loads(data[start:start + length])
        stored_key, payload, info = header["key"], header["payload"], NetworkInfo.from_dict(header["network"])
        if not isinstance(stored_key, dict) or not isinstance(payload, dict):
            raise TypeError("key and payload are not objects")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, "torn (its header does not read)"
    if header.get("format") != FORMAT or stored_key.get("runtime_version") != RUNTIME_VERSION:
        return None, (f"stale (format {header.get('format')}, {stored_key.get('runtime')} "
                      f"{stored_key.get('runtime_version')})")
    if stored_key != key.to_dict() or not key.matches(info):
        return None, "another network's"
    onnx = data[start + length:]
    if len(onnx) != payload.get("bytes") or zlib.crc32(onnx) != payload.get("crc32"):
        return None, "torn (its payload is cut short or damaged)"
    return (onnx, info), ""


def write_graph(path: Path, key: GraphKey, onnx: bytes, info: NetworkInfo, exporter: dict) -> None:
    """Store a graph at `path`, whole or not at all."""
    header = json.dumps({"format": FORMAT, "key": key.to_dict(), "network": info.to_dict(),
                         "payload": {"bytes": len(onnx), "crc32": zlib.crc32(onnx)},
                         "exported": {**exporter, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}}).encode()
    _remove_leftovers(path)
    _store(path, [MAGIC + len(header).to_bytes(_HEADER_LENGTH, "little") + header, onnx])


def failure_path(path: Path) -> Path:
    return path.with_name(path.name + ".failed")


def write_failure(path: Path, error: GraphExportError) -> None:
    """Remember that the graph `path` would hold cannot be exported, so that the next process runs on torch
    at once rather than load and trace the backbone again (the key, in the name, holds the versions: an
    upgrade tries again)."""
    _store(failure_path(path), [json.dumps({"message": error.message, "hint": error.hint}).encode()])


def _store(path: Path, chunks: list[bytes]) -> None:
    """Write `chunks` to `path` whole or not at all: a temporary file of a name no other process uses, in
    the same folder, fsynced and renamed over it."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        os.chmod(temporary, 0o644)  # not mkstemp's 0600: a cache folder may be shared
        with os.fdopen(descriptor, "wb") as file:
            for chunk in chunks:
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_folder(path.parent)


def read_failure(path: Path) -> GraphExportError | None:
    """The export failure remembered for the graph `path`, if any (an unreadable record is none)."""
    failure = failure_path(path)
    try:
        record = json.loads(failure.read_text())
        message, hint = str(record["message"]), str(record["hint"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return GraphExportError(f"{message} (found when it was first tried; delete {failure} to try again)", hint)


def _remove_leftovers(path: Path) -> None:
    """Temporary files of `path` left by writers that died; only under the lock, where no other process
    writes one (without flock there is no telling, so they stay)."""
    if fcntl is None:
        return
    for leftover in path.parent.glob(glob.escape(path.name) + ".*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def _sync_folder(folder: Path) -> None:
    """Make the rename durable; some platforms cannot open a folder, and there it is the rename alone."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock
