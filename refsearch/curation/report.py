"""A self-contained HTML page of thumbnails, side by side, for a person to review before deleting.

Thumbnails are embedded as base64 JPEGs, so the page can be mailed or moved without its images.
"""
from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from .. import classes
from ..images import ImageError, decode
from .results import Cluster, DuplicateGroup, Outlier

THUMBNAIL_SIZE = 160

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1em; margin: 1.4em 0 0.4em; }
.row { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
figure { margin: 0; width: 170px; font-size: 11px; word-break: break-all; }
figure img { display: block; max-width: 160px; max-height: 160px; border: 3px solid transparent; }
figure.keep img { border-color: #2a9d4b; }
figure .missing { width: 160px; height: 100px; background: #eee; display: flex; align-items: center;
                  justify-content: center; color: #a00; }
.note { color: #666; }
.why { font-size: 12px; color: #444; margin: 0.4em 0 0; padding-left: 1.2em; }
"""


def write_duplicates_report(path: str | os.PathLike, groups: Sequence[DuplicateGroup], title: str) -> None:
    """Each group's images side by side, then why each copy was judged one; last, the pairs that could
    not be checked because a file could not be read (`DuplicateGroups.unreadable`)."""
    sections = []
    for number, group in enumerate(groups, start=1):
        figures, reasons = [], []
        for member in group.members:
            keep = member is group.representative
            verdict = "keep" if keep else f"copy, similarity {member.similarity:.3f}"
            caption = [f"id {member.id}", f"{member.width}x{member.height}", verdict]
            figures.append(_figure(member.path, caption, keep=keep))
            if member.check is not None:
                reasons.append(f"<li>id {member.id}: {html.escape(member.check.reason)}</li>")
        sections.append(f"<h2>{number}. {group.kind} duplicates, {len(group)} images</h2>"
                        f"<div class=row>{''.join(figures)}</div><ul class=why>{''.join(reasons)}</ul>")
    unreadable = dict.fromkeys(check.reason for check in getattr(groups, "unreadable", ()))
    if unreadable:
        items = "".join(f"<li>{html.escape(reason)}</li>" for reason in unreadable)
        sections.append(f"<h2>Not verified: files that could not be read</h2><ul class=why>{items}</ul>")
    _write(path, title, "The framed image is the one to keep (most pixels, then largest file); each other "
                        "image was verified a copy of it from the two files' pixels, for the reason listed.",
           sections)


def write_outliers_report(path: str | os.PathLike, outliers: Sequence[Outlier], title: str,
                          nearest_paths: dict[int, str]) -> None:
    sections = []
    for rank, outlier in enumerate(outliers, start=1):
        label = f"{outlier.label} {classes.class_name(outlier.label)}"
        figures = [_figure(outlier.path, [f"id {outlier.id}", label, f"score {outlier.score:.3f}"])]
        if outlier.nearest_id in nearest_paths:
            caption = [f"nearest: id {outlier.nearest_id}", f"similarity {outlier.nearest_similarity:.3f}"]
            figures.append(_figure(nearest_paths[outlier.nearest_id], caption))
        sections.append(f"<h2>{rank}. {html.escape(Path(outlier.path).name)}</h2>"
                        f"<div class=row>{''.join(figures)}</div>")
    _write(path, title, "Each image beside its nearest neighbour; a higher score is more unusual.", sections)


def write_clusters_report(path: str | os.PathLike, clusters: Sequence[Cluster], title: str,
                          member_paths: dict[int, str], shown: int) -> None:
    sections = []
    for cluster in clusters:
        figures = [_figure(member_paths[m], [f"id {m}"], keep=m == cluster.representative)
                   for m in cluster.members[:shown]]
        more = f"<p class=note>and {len(cluster) - shown} more</p>" if len(cluster) > shown else ""
        heading = f"cluster {cluster.number}: {len(cluster)} images, cohesion {cluster.cohesion:.3f}"
        sections.append(f"<h2>{heading}</h2><div class=row>{''.join(figures)}</div>{more}")
    _write(path, title, f"The framed image is nearest the cluster's centre; up to {shown} members shown, "
                        "nearest the centre first.", sections)


def _figure(image_path: str, caption: list[str], keep: bool = False) -> str:
    source = _thumbnail(image_path)
    picture = (f'<img src="data:image/jpeg;base64,{source}" alt="">' if source
               else '<div class=missing>unreadable</div>')
    lines = "<br>".join(html.escape(line) for line in [*caption, Path(image_path).name])
    return (f'<figure{" class=keep" if keep else ""} title="{html.escape(image_path)}">{picture}'
            f"<figcaption>{lines}</figcaption></figure>")


def _thumbnail(image_path: str) -> str | None:
    try:
        image = decode(image_path, min_short_side=THUMBNAIL_SIZE).image
    except ImageError:
        return None
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _write(path: str | os.PathLike, title: str, legend: str, sections: list[str]) -> None:
    body = "".join(sections) or "<p>Nothing found.</p>"
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p class=note>{html.escape(legend)}</p>{body}</body></html>\n")
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(page, encoding="utf-8")
    os.replace(temporary, path)
