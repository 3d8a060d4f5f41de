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
from .common import INDEX_HELP, open_index, print_json, user_errors

# refsearch.curation's values, repeated here because importing it loads numpy, scipy and faiss, which
# --help must not wait for; a test checks that they agree.
NEAR_DUPLICATE_THRESHOLD = 0.675
EXPORT_MODES = ("copy", "symlink", "list")
EXPORT_LAYOUTS = ("relative", "flat")

REPORT_HELP = "Also write an HTML page of thumbnails, side by side, to review before deleting anything."
THRESHOLD_HELP = ("Similarity (the mean of the global and the cell-by-cell cosine) from which two images are "
                  "copies; higher finds fewer, closer copies.")


@app.command("dedup")
def dedup_command(
    index: Optional[Path] = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    threshold: float = typer.Option(NEAR_DUPLICATE_THRESHOLD, "--threshold", "-t", help=THRESHOLD_HELP),
    exact: bool = typer.Option(False, "--exact", help="Only byte-for-byte identical files."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Show at most this many groups, largest "
                                        "first."),
    report: Optional[Path] = typer.Option(None, "--report", help=REPORT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the groups as JSON: kind and members (id, "
                                 "path, label, similarity to the one to keep, width, height), that one "
                                 "first."),
) -> None:
    """Find groups of duplicated images: identical files and edited copies.

    Copies may be cropped, resized, recompressed, grayscale, slightly rotated or re-lit. The first image
    of each group, the one with the most pixels, is the one to keep; nothing is deleted."""
    with user_errors():
        with open_index(index) as opened:
            groups = opened.curation.exact_duplicates() if exact else opened.curation.near_duplicates(threshold)
            shown = groups[:limit] if limit is not None else groups
            if report:
                from ..curation.report import write_duplicates_report

                write_duplicates_report(report, shown, f"Duplicates in {opened.path}")
    if as_json:
        print_json([{"kind": g.kind, "members": [asdict(m) for m in g.members]} for g in shown])
        return
    for number, group in enumerate(shown, start=1):
        typer.echo(f"group {number}: {count(len(group), 'image')} ({group.kind})")
        for member in group.members:
            mark = "keep" if member is group.representative else f"{member.similarity:.3f}"
            typer.echo(f"  {mark:>5}  {member.width:>5}x{member.height:<5}  {member.path}")
    redundant = sum(len(g) - 1 for g in groups)
    typer.echo(f"{count(len(groups), 'group')}, {count(redundant, 'redundant copy')}"
               + (f" (showing {len(shown)})" if len(shown) < len(groups) else "")
               + (f"; thumbnails in {report}" if report else ""))


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
    drop_duplicates: bool = typer.Option(False, "--drop-duplicates", help="Keep one image of each group of "
                                         "near-duplicates (the one `dedup` marks keep)."),
    threshold: float = typer.Option(NEAR_DUPLICATE_THRESHOLD, "--threshold", "-t", help="With "
                                    "--drop-duplicates: " + THRESHOLD_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the export summary as JSON."),
) -> None:
    """Export the index's images, or a cleaned subset, as copies, links or a list.

    Nothing is written at the destination unless the whole export succeeds."""
    with user_errors():
        with open_index(index) as opened:
            dropped = set(_read_ids(exclude)) if exclude else set()
            if drop_duplicates:
                dropped.update(opened.curation.near_duplicates(threshold).redundant_ids())
            subset = opened.curation.subset(_read_ids(ids) if ids else None, exclude=dropped)
            summary = subset.export(destination, mode, layout=layout)
    if as_json:
        print_json(asdict(summary))
        return
    verb = {"copy": "copied", "symlink": "linked", "list": "listed"}[summary.mode]
    typer.echo(f"{verb} {count(summary.files, 'image')} ({summary.bytes / 1e6:.1f} MB) to {summary.destination}")


def _read_ids(path: Path) -> list[int]:
    text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
    try:
        return [int(token) for token in text.replace(",", " ").split()]
    except ValueError as exc:
        raise InvalidArgumentError(f"{path}: expected image ids (integers), {exc}") from None


@app.command("remove")
def remove_command(
    images: Optional[list[str]] = typer.Argument(None, help="Images to remove: ids (the `id` field of "
                                                 "query, dedup and outliers --json output) or file paths."),
    index: Optional[Path] = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    ids: Optional[Path] = typer.Option(None, "--ids", help="Also remove the image ids listed in this file "
                                       "(whitespace- or comma-separated; # starts a comment)."),
    drop_duplicates: bool = typer.Option(False, "--drop-duplicates", help="Also remove every near-duplicate "
                                         "but one per group (the one `dedup` marks keep)."),
    threshold: float = typer.Option(NEAR_DUPLICATE_THRESHOLD, "--threshold", "-t", help="With "
                                    "--drop-duplicates: " + THRESHOLD_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; change nothing."),
    wait: bool = typer.Option(False, "--wait", help="If another process is writing the index, wait for it "
                              "to finish instead of stopping at once."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON: dry_run, the images (removed, or to "
                                 "remove with --dry-run) and images_left."),
) -> None:
    """Remove images from the index (their files stay on disk).

    A later `build-index` over the same folder does not add them back unless their files change. An id
    or path the index does not hold is an error, and then nothing is removed."""
    with user_errors():
        with open_index(index) as opened:
            chosen = [int(i) if i.isdigit() else opened.record_of_path(i).id for i in images or []]
            chosen += _read_ids(ids) if ids else []
            if drop_duplicates:
                chosen += opened.curation.near_duplicates(threshold).redundant_ids()
            if not chosen:
                raise InvalidArgumentError("name the images to remove",
                                           "ids or paths, --ids FILE or --drop-duplicates")
            records = [opened.record(image_id) for image_id in sorted(set(chosen))]
        remaining = len(opened)
        if not dry_run:
            from ..removal import remove_images

            remaining -= remove_images(opened.path, [r.id for r in records], wait=wait)
    if as_json:
        print_json({"dry_run": dry_run, "images": [asdict(r) for r in records], "images_left": remaining})
        return
    for record in records:
        typer.echo(f"  {record.id:>8}  {record.path}")
    if dry_run:
        typer.echo(f"would remove {count(len(records), 'image')}; nothing changed ({count(remaining, 'image')} in the "
                   "index)")
    else:
        typer.echo(f"removed {count(len(records), 'image')}; {remaining} left (the files stay on disk)")
