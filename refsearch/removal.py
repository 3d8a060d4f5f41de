"""Taking images out of an index, and later reclaiming their space: both through the index's one writer."""
from __future__ import annotations

import os

from .errors import IndexStateError
from .writer import IndexWriter, PublishSummary


def remove_images(index: str | os.PathLike, ids: list[int], *, wait: bool = False) -> int:
    """Remove images from an index by id and publish the result. Their files are remembered as removed
    (in skipped.tsv), so a later incremental build does not add them back unless they change. An id the
    index does not hold raises NotFoundError, and then nothing is removed; ids whose removal was
    interrupted are finished. Returns how many were removed."""
    with IndexWriter.open(index, wait=wait, command="remove") as writer:
        if writer.has_pending_build:
            raise IndexStateError(f"{index} holds an interrupted build",
                                  "run the same `refsearch build-index` again to finish it first")
        wanted = {int(i) for i in ids}
        interrupted = wanted & set(writer.pending_removals().tolist())
        records = writer.records(sorted(wanted - interrupted))
        removed = writer.remove((r.id for r in records), keep_out=True)
        writer.publish()
    return len(removed) + len(interrupted)


def compact_index(index: str | os.PathLike, *, wait: bool = False) -> PublishSummary:
    """Rewrite the index's segments without removed images (see `IndexWriter.compact`)."""
    with IndexWriter.open(index, wait=wait, command="compact") as writer:
        return writer.compact()


__all__ = ["compact_index", "remove_images"]
