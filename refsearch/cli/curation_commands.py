"""`dedup`, `outliers`, `clusters`, `export` and `remove`: dataset curation over an index."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from .. import classes
from ..errors import InvalidArgumentError
from ..wording import count
from .app import app
from .common import INDEX_HELP, limit_pixels, max_pixels_option, open_index, print_json, user_errors

# refsearch.curation's values, repeated here because importing it loads numpy, scipy and faiss, which
# --help must not wait for; a test checks that they agree.
CANDIDATE_THRESHOLD = 0.5
EXPORT_MODES = ("copy", "symlink", "list")
EXPORT_LAYOUTS = ("relative", "flat")

REPORT_HELP = "Also write an HTML page of thumbnails, side by side, to review before deleting anything."
THRESHOLD_HELP = ("Similarity (the mean of the global and the cell-by-cell cosine) from which two "
                  "neighbouring images are checked, from their files' pixels, for being copies; lower checks "
                  "more pairs (slower) and may find more heavily edited copies.")
# Options export and remove share with each other or with dedup.
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar while the files of candidate pairs are "
                     "checked.")
DROP_THRESHOLD = typer.Option(CANDIDATE_THRESHOLD, "--threshold", "-t", help="With --drop-duplicates: "
                              + THRESHOLD_HELP)


@app.command("dedup")
def dedup_command(
    ctx: typer.Context,
    index: Optional[Path] = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    threshold: float = typer.Option(CANDIDATE_THRESHOLD, "--threshold", "-t", help=THRESHOLD_HELP),
    exact: bool = typer.Option(False, "--exact", help="Only byte-for-byte identical files."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Show at most this many groups, largest "
                                        "first."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Threads reading and comparing files "
                                          "(default: up to 4)."),
    report: Optional[Path] = typer.Option(None, "--report", help=REPORT_HELP),
    max_pixels: int = max_pixels_option(),
    quiet: bool = QUIET,
    as_json: bool = typer.Option(False, "--json", help="Print the groups as JSON: kind and members (id, "
                                 "path, label, similarity to the one to keep, width, height, and check: "
                                 "why it was judged a copy of the one to keep), that one first."),
) -> None:
    """Find groups of duplicated images: identical files and edited copies.

    Copies may be cropped, resized, recompressed, grayscale, re-lit, slightly rotated or carry a caption
    or a logo. Neighbours similar enough (--threshold) are candidates, and each candidate pair is verified
    from the two files: aligned by matching keypoints, their luminance must agree, so look-alike photos
    (two dog breeds, a leopard and a cheetah) are not grouped. The first image of each group, the one
    with the most pixels, is the one to keep; nothing is deleted."""
    limit_pixels(ctx, max_pixels)
    with user_errors():
        with open_index(index) as opened:
            if exact:
                groups = opened.curation.exact_duplicates()
            else:
                groups = opened.curation.near_duplicates(threshold, workers=workers, progress=not quiet)
            shown = groups[:limit] if limit is not None else groups
            if report:
                from ..curation.report import write_duplicates_report

                write_duplicates_report(report, shown, f"Duplicates in {opened.path}")
    _warn_unreadable(groups)
    if as_json:
        print_json([{"kind": g.kind, "members": [asdict(m) for m in g.members]} for g in shown])
        return
    for number, group in enumerate(shown, start=1):
        typer.echo(f"group {number}: {count(len(group), 'image')} ({group.kind})")
        for member in group.members:
            mark = "keep" if member is group.representative else "copy"
            typer.echo(f"  {mark:>5}  {member.width:>5}x{member.height:<5}  {member.path}")
            if member.check is not None:
                typer.echo(f"  {'':>5}  {'':>11}  {member.check.reason}")
    redundant = sum(len(g) - 1 for g in groups)
    checked = "" if exact else f" ({count(groups.candidate_pairs, 'candidate pair')} checked)"
    typer.echo(f"{count(len(groups), 'group')}, {count(redundant, 'redundant copy')}{checked}"
               + (f" (showing {len(shown)})" if len(shown) < len(groups) else "")
               + (f"; thumbnails in {report}" if report else ""))


def _warn_unreadable(groups) -> None:
    """One `warning:` line on stderr per file that left candidate pairs unverified."""
    reasons = dict.fromkeys(check.reason for check in getattr(groups, "unreadable", ()))
    for reason in reasons:
        typer.echo(f"warning: not verified: {reason}", err=True)


def _redundant_copies(opened, threshold: float, quiet: bool) -> list[dict]:
    """The verified copies to drop (all but the one to keep of each group), each with the image it copies
    and why it was judged a copy."""
    groups = opened.curation.near_duplicates(threshold, progress=not quiet)
    _warn_unreadable(groups)
    return [{"id": m.id, "path": m.path, "copy_of": g.representative.id,
             "copy_of_path": g.representative.path, "reason": m.check.reason}
            for g in groups for m in g.members[1:]]


def _echo_image(image_id: int, path: str, copy: dict | None = None) -> None:
    """An image's id and path, and, for a verified copy, the image it copies and why."""
    typer.echo(f"  {image_id:>8}  {path}")
    if copy is not None:
        typer.echo(f"  {'':>8}  copy of {copy['copy_of']} ({copy['copy_of_path']}): {copy['reason']}")


@app.command("outliers")
def outliers_command(
    n: int = typer.Option(20, "-n", help="How many to list."),
    index: Optional[Path] = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    neighbours: int = typer.Option(10, "--neighbours", help="Nearest images an image is compared with."),
    labels: bool = typer.Option(False, "--labels", help="List images whose label their neighbours or the "
                                "network's confident prediction dispute, instead."),
    min_confidence: float = typer.Option(0.8, "--min-confidence", help="With --labels: the prediction "
                                         "probability from which it disputes a label."),
    report: Optional[Path] = typer.Option(None, "--report", help=REPORT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON."),
) -> None:
    """List the images least like their neighbours, or (--labels) those whose label looks wrong.

    An outlier's score is 1 - its mean similarity to its nearest images, its own copies left out: higher
    is more unusual. A label is disputed when most of the image's neighbours carry another one, or when
    the network predicts another class with at least --min-confidence."""
    if labels and report:
        raise typer.BadParameter("--report shows outliers; leave it out with --labels")
    with user_errors():
        with open_index(index) as opened:
            if labels:
                found = opened.curation.label_issues(neighbours=neighbours, min_confidence=min_confidence)[:n]
            else:
                found = opened.curation.outliers(n, neighbours=neighbours)
                if report:
                    from ..curation.report import write_outliers_report

                    nearest = {o.nearest_id for o in found if o.nearest_id >= 0}
                    paths = {r.id: r.path for r in opened.records_of(sorted(nearest))}
                    write_outliers_report(report, found, f"Outliers in {opened.path}", paths)
    if as_json:
        print_json(found.to_records())
        return
    if labels:
        typer.echo(f"{'confidence':>10}  {'agree':>5}  {'label':<22}  {'suggested':<22}  {'reason':<11}  "
                   "path")
        for issue in found:
            label, suggested = classes.class_name(issue.label)[:22], classes.class_name(issue.suggested)[:22]
            typer.echo(f"{issue.confidence:10.3f}  {issue.neighbour_agreement:5.2f}  {label:<22}  "
                       f"{suggested:<22}  {issue.reason.split()[0]:<11}  {issue.path}")
        return
    typer.echo(f"{'score':>6}  {'nearest':>7}  path")
    for outlier in found:
        typer.echo(f"{outlier.score:6.3f}  {outlier.nearest_similarity:7.3f}  {outlier.path}")


@app.command("clusters")
def clusters_command(
    n: Optional[int] = typer.Option(None, "-n", help="How many clusters (default about sqrt(images / 2))."),
    index: Optional[Path] = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of the k-means initialisation."),
    show: int = typer.Option(8, "--show", help="With --report: members shown per cluster."),
    report: Optional[Path] = typer.Option(None, "--report", help=REPORT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the clusters as JSON (members nearest the "
                                 "centre first)."),
) -> None:
    """Group the images into clusters, to see how the collection is spread.

    k-means on the global descriptors; each cluster is led by the image nearest its centre, and its
    cohesion is its members' mean cosine similarity to the centre."""
    with user_errors():
        with open_index(index) as opened:
            found = opened.curation.clusters(n, seed=seed)
            if report:
                from ..curation.report import write_clusters_report

                ids = {m for cluster in found for m in cluster.members[:show]}
                paths = {r.id: r.path for r in opened.records_of(sorted(ids))}
                write_clusters_report(report, found, f"Clusters of {opened.path}", paths, show)
    if as_json:
        print_json([{"number": c.number, "size": len(c), "cohesion": c.cohesion,
                     "representative": c.representative, "representative_path": c.representative_path,
                     "members": list(c.members)} for c in found])
        return
    typer.echo(f"{'cluster':>7}  {'size':>6}  {'cohesion':>8}  representative")
    for c in found:
        typer.echo(f"{c.number:>7}  {len(c):>6}  {c.cohesion:8.3f}  {c.representative_path}")


@app.command("export")
def export_command(
    ctx: typer.Context,
    destination: Path = typer.Argument(..., help="New folder (or, with --mode list, new file) to write."),
    index: Optional[Path] = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    mode: str = typer.Option("copy", "--mode", help=f"One of {', '.join(EXPORT_MODES)}: copy the files, "
                             "link to them, or write their paths one per line."),
    layout: str = typer.Option("relative", "--layout", help=f"One of {', '.join(EXPORT_LAYOUTS)}: keep the "
                               "folders under the indexed folder, or put every file side by side."),
    ids: Optional[Path] = typer.Option(None, "--ids", help="Export only the image ids listed in this file "
                                       "(whitespace- or comma-separated; # starts a comment)."),
    exclude: Optional[Path] = typer.Option(None, "--exclude", help="Leave out the image ids listed in this "
                                           "file."),
    drop_duplicates: bool = typer.Option(False, "--drop-duplicates", help="Leave out every verified copy but "
                                         "the one `dedup` marks keep."),
    threshold: float = DROP_THRESHOLD,
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the export and list the copies "
                                 "--drop-duplicates leaves out; write nothing."),
    max_pixels: int = max_pixels_option(),
    quiet: bool = QUIET,
    as_json: bool = typer.Option(False, "--json", help="Print the export summary as JSON (with "
                                 "--drop-duplicates, the copies left out, each with the image it copies "
                                 "and why)."),
) -> None:
    """Export the index's images, or a cleaned subset, as copies, links or a list.

    Nothing is written at the destination unless the whole export succeeds."""
    limit_pixels(ctx, max_pixels)
    with user_errors():
        with open_index(index) as opened:
            dropped = set(_read_ids(exclude)) if exclude else set()
            copies = _redundant_copies(opened, threshold, quiet) if drop_duplicates else []
            dropped.update(copy["id"] for copy in copies)
            subset = opened.curation.subset(_read_ids(ids) if ids else None, exclude=dropped)
            summary = subset.export(destination, mode, layout=layout, dry_run=dry_run)
    if as_json:
        print_json({**asdict(summary), **({"dropped_duplicates": copies} if drop_duplicates else {})})
        return
    if copies:
        typer.echo(f"{'would leave' if dry_run else 'left'} out {count(len(copies), 'verified copy')}:")
        for copy in copies:
            _echo_image(copy["id"], copy["path"], copy)
    verb = {"copy": "copy", "symlink": "link", "list": "list"}[summary.mode] if dry_run else \
        {"copy": "copied", "symlink": "linked", "list": "listed"}[summary.mode]
    typer.echo(f"{'would ' if dry_run else ''}{verb} {count(summary.files, 'image')} "
               f"({summary.bytes / 1e6:.1f} MB) to {summary.destination}"
               + ("; nothing written" if dry_run else ""))


def _read_ids(path: Path) -> list[int]:
    text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
    try:
        return [int(token) for token in text.replace(",", " ").split()]
    except ValueError as exc:
        raise InvalidArgumentError(f"{path}: expected image ids (integers), {exc}") from None


@app.command("remove")
def remove_command(
    ctx: typer.Context,
    images: Optional[list[str]] = typer.Argument(None, help="Images to remove: ids (the `id` field of "
                                                 "query, dedup and outliers --json output) or file paths."),
    index: Optional[Path] = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    ids: Optional[Path] = typer.Option(None, "--ids", help="Also remove the image ids listed in this file "
                                       "(whitespace- or comma-separated; # starts a comment)."),
    drop_duplicates: bool = typer.Option(False, "--drop-duplicates", help="Also remove every verified copy "
                                         "but the one `dedup` marks keep."),
    threshold: float = DROP_THRESHOLD,
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; change nothing."),
    wait: bool = typer.Option(False, "--wait", help="If another process is writing the index, wait for it "
                              "to finish instead of stopping at once."),
    max_pixels: int = max_pixels_option(),
    quiet: bool = QUIET,
    as_json: bool = typer.Option(False, "--json", help="Print as JSON: dry_run, the images (removed, or to "
                                 "remove with --dry-run), images_left, and with --drop-duplicates the "
                                 "copies among them, each with the image it copies and why."),
) -> None:
    """Remove images from the index (their files stay on disk).

    A later `build-index` over the same folder does not add them back unless their files change. An id
    or path the index does not hold is an error, and then nothing is removed."""
    limit_pixels(ctx, max_pixels)
    with user_errors():
        with open_index(index) as opened:
            chosen = [int(i) if i.isdigit() else opened.record_of_path(i).id for i in images or []]
            chosen += _read_ids(ids) if ids else []
            copies = _redundant_copies(opened, threshold, quiet) if drop_duplicates else []
            chosen += [copy["id"] for copy in copies]
            if not chosen and not drop_duplicates:
                raise InvalidArgumentError("name the images to remove",
                                           "ids or paths, --ids FILE or --drop-duplicates")
            records = [opened.record(image_id) for image_id in sorted(set(chosen))]
        remaining = len(opened)
        if records and not dry_run:
            from ..removal import remove_images

            remaining -= remove_images(opened.path, [r.id for r in records], wait=wait)
    if as_json:
        print_json({"dry_run": dry_run, "images": [asdict(r) for r in records], "images_left": remaining,
                    **({"duplicates": copies} if drop_duplicates else {})})
        return
    reasons = {copy["id"]: copy for copy in copies}
    for record in records:
        _echo_image(record.id, record.path, reasons.get(record.id))
    if dry_run:
        typer.echo(f"would remove {count(len(records), 'image')}; nothing changed "
                   f"({count(remaining, 'image')} in the index)")
    else:
        typer.echo(f"removed {count(len(records), 'image')}; {remaining} left (the files stay on disk)")
