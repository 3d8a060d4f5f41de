"""`build-index`, `query`, `info`, `verify` and `compact`."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from ..wording import count
from .app import app
from .common import (
    INDEX_HELP,
    fail,
    limit_pixels,
    max_pixels_option,
    network_note,
    runtime_option,
    note,
    open_index,
    print_json,
    print_json_line,
    resolve_index,
    search_request,
    user_errors,
)


@app.command("build-index")
def build_index_command(
    ctx: typer.Context,
    source: Optional[Path] = typer.Argument(None, help="Folder of images, searched recursively (jpg, jpeg, "
                                            "png, webp, bmp, tif). Optional with --recipe."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Index folder to create or update "
                                          "(default: the recipe's, else $REFSEARCH_INDEX or ./refsearch.index)."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="A named recipe from index_builds/ "
                                         "(e.g. demo, imagenet-train) or a recipe .toml file."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Network: efficientnet-lite2 (default, "
                                           "bundled weights) or vgg19 (the paper's; needs its weights)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Backbone weights: a PyTorch state dict or "
                                           "`refsearch adapt` file, or a name - for efficientnet-lite2 gray "
                                           "(the default, adapted to gray photos) or imagenet (vgg19: its "
                                           "file in torch's cache)."),
    input_size: Optional[int] = typer.Option(None, "--input-size", min=32, help="Square the network sees, in "
                                             "pixels (default: its native size, 260 for efficientnet-lite2)."),
    crop: Optional[str] = typer.Option(None, "--crop", help="What the network sees of a photo: full (the "
                                       "whole frame squeezed to a square, the default) or center (its centre "
                                       "square)."),
    global_dim: Optional[int] = typer.Option(None, "--global-dim", min=1, help="PCA size of the global descriptor "
                                             "(default 128)."),
    cell_dim: Optional[int] = typer.Option(None, "--cell-dim", min=1, help="PCA size of each cell descriptor (default 64)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Images per forward pass "
                                             "(default 4 on CPU, 64 on GPU)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Threads decoding images while the "
                                          "network runs (default 2 on CPU, one per core with --device cuda; "
                                          "0: decode in the calling thread)."),
    streams: Optional[int] = typer.Option(None, "--streams", min=1, help="Forward passes run side by side, one "
                                          "thread each (default: one per core on CPU, 2 on GPU)."),
    device: str = typer.Option("cpu", "--device", help="Where the network runs: cpu or cuda."),
    runtime: str = runtime_option(),
    precision: str = typer.Option("auto", "--precision", help="What the network computes in: auto (float16 "
                                  "on GPU, float32 on CPU), float32, float16 or bfloat16 (see README)."),
    engine: str = typer.Option("local", "--engine", help="Where images are decoded and the network runs: "
                               "local (this process's threads) or ray (a Ray cluster; pip install "
                               "'refsearch[ray]'). This process writes the index either way."),
    address: Optional[str] = typer.Option(None, "--address", help="With --engine ray: the cluster to join, "
                                          "HOST:PORT, or auto for a `ray start` cluster of this machine "
                                          "(default $RAY_ADDRESS, else a Ray started on this machine for the "
                                          "build)."),
    actors: Optional[int] = typer.Option(None, "--actors", min=1, help="With --engine ray: backbone actors, "
                                         "each loading the network once (default: one per GPU with --device "
                                         "cuda, else one per CPU of the cluster)."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Discard an existing index at the output and "
                                 "start over (needed to change backbone, dimensions or source folder)."),
    wait: bool = typer.Option(False, "--wait", help="If another process is writing the index, wait for it "
                              "to finish instead of stopping at once."),
    max_pixels: int = max_pixels_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the build summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Index a folder tree of images for `query` and `colorize`.

    Running it again on the same output finishes an interrupted build, adds new or changed files and
    drops removed ones. Unreadable files are skipped and listed in OUTPUT/skipped.tsv. Labels come from
    ImageNet wnid folders (train/n01440764/...) or file names (n01440764_*.JPEG), else from the
    backbone's prediction.
    """
    limit_pixels(ctx, max_pixels)
    with user_errors("run the same command again to resume the build"):
        from ..build import build_index
        from ..config import IndexConfig
        from ..errors import InvalidArgumentError
        from ..recipes import available_recipes, load_recipe

        config, search = IndexConfig(), None
        if recipe:
            loaded = load_recipe(recipe)
            config, search = loaded.config, loaded.search
            source = source or loaded.source
            output = output or loaded.output
            if source is None:
                raise InvalidArgumentError(f"recipe {loaded.name} needs a source folder",
                                           "pass it as the first argument or set the environment variable "
                                           "its source names")
        if source is None:
            raise InvalidArgumentError("give a folder of images, or --recipe NAME",
                                       f"known recipes: {', '.join(available_recipes()) or 'none found'}")
        config = config.with_(backbone=backbone, global_dim=global_dim, cell_dim=cell_dim, input_size=input_size,
                              crop=crop)
        engine_options = _engine_options(engine, address, actors, workers, streams)
        summary = build_index(source, resolve_index(output), config, weights=weights, batch_size=batch_size,
                              workers=workers, streams=streams, device=device, precision=precision, runtime=runtime,
                              rebuild=rebuild, progress=not quiet, engine=engine, engine_options=engine_options,
                              search=search, wait=wait, on_wait=lambda holder: note(f"waiting for {holder} to finish writing"))
    for text in summary.notes:
        note(text)
    if as_json:
        print_json(asdict(summary))
        return
    counts = (f"{summary.index}: {count(summary.images, 'image')} ({summary.added} added, {summary.removed} "
              f"removed, {summary.unchanged} unchanged)")
    if summary.up_to_date:
        typer.echo(f"{counts}; up to date: generation {summary.generation} stays published")
    else:
        typer.echo(f"{counts} in {summary.seconds:.1f} s, {summary.images_per_second} images/s; generation "
                   f"{summary.generation}" + (" (resumed an interrupted build)" if summary.resumed else ""))
    if summary.skipped_total:
        typer.echo(f"skipped {count(summary.skipped_total, 'unreadable file')} ({summary.skipped} new); reasons in "
                   f"{summary.report}")


@app.command("query")
def query_command(
    ctx: typer.Context,
    images: list[Path] = typer.Argument(..., help="Query image(s), or folders of them with --jsonl; colour "
                                        "images are searched as luminance."),
    k: int = typer.Option(10, "-k", "--k", min=1, help="How many references to list (at least 1)."),
    index: Optional[Path] = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    class_wnid: Optional[str] = typer.Option(None, "--class", help="Search this ImageNet class (a wnid like "
                                             "n02123045) alone, instead of the predicted one; should it hold "
                                             "fewer than k images, the rest come from all classes after them."),
    any_class: bool = typer.Option(False, "--any-class", help="Search every class, not only the predicted "
                                   "one (excludes --class)."),
    exclude_self: bool = typer.Option(False, "--exclude-self", help="Leave out indexed copies of the query file."),
    candidates: Optional[int] = typer.Option(None, "--candidates", help="How many of the best by global "
                                             "cosine go on to the local re-rank (default: the index's, 200; "
                                             "at least k)."),
    luminance_weight: Optional[float] = typer.Option(None, "--lum-weight", min=0.0, help="Weight w of d_lum "
                                                     "in the re-rank score d_sem + w*d_lum (default: the "
                                                     "index's, 0.25; 0 ranks by d_sem alone)."),
    rescue: Optional[int] = typer.Option(None, "--rescue", min=0, help="All-class global neighbours also "
                                         "ranked when closer than anything in the searched classes "
                                         "(default 20; 0: none)."),
    widen: Optional[str] = typer.Option(None, "--widen", help="When the predicted class holds too few images, "
                                        "add the classes nearest it in meaning (taxonomy, the default: WordNet "
                                        "similarity expected under the predicted classes) or the next most "
                                        "probable ones (probability, the paper's)."),
    global_only: bool = typer.Option(False, "--global-only", help="Rank by global cosine, no local re-rank."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Refuse unless the index was built with "
                                           "this backbone (the index's own is used either way)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Backbone weights (file or name): those "
                                           "given to build-index, if any (other weights are refused)."),
    device: str = typer.Option("cpu", "--device", help="Where the network runs: cpu or cuda."),
    runtime: str = runtime_option(),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per query, a line each: query, "
                                 "predicted (wnid, name, probability), searched_classes (null: all), notes, "
                                 "results (rank, id, path, label, score, semantic, luminance, ...)."),
    jsonl: Optional[Path] = typer.Option(None, "--jsonl", help="Append the answers (a --json object a line, or "
                                         "{query, error, hint} for a photo that cannot be read) to this file "
                                         "instead, batched, with a progress bar; a rerun answers only the "
                                         "photos the file does not name yet. Needed when a query is a folder."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="With --jsonl: photos per "
                                             "network pass (default 4 on CPU, 64 on GPU)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="With --jsonl: threads decoding the "
                                          "next photos while the network runs (default 2 on CPU, one per core "
                                          "with --device cuda; 0: decode in the calling thread)."),
    streams: Optional[int] = typer.Option(None, "--streams", min=1, help="With --jsonl: forward passes run side "
                                          "by side, one thread each (default: one per core on CPU, 2 on GPU)."),
    engine: str = typer.Option("local", "--engine", help="With --jsonl: where photos are decoded and answered: "
                               "local (this process) or ray (a Ray cluster, each actor opening the index; pip "
                               "install 'refsearch[ray]'). This process writes the file either way."),
    address: Optional[str] = typer.Option(None, "--address", help="With --engine ray: the cluster to join, "
                                          "HOST:PORT, or auto for a `ray start` cluster of this machine "
                                          "(default $RAY_ADDRESS, else a Ray started on this machine)."),
    actors: Optional[int] = typer.Option(None, "--actors", min=1, help="With --engine ray: actors answering, "
                                         "each opening the index and loading the network once (default: one "
                                         "per GPU with --device cuda, else one per CPU of the cluster)."),
    max_pixels: int = max_pixels_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (with --jsonl)."),
) -> None:
    """List the k best colour references for a photo: the paper's class-restricted global ranking
    followed by the local (semantic + luminance) re-rank. Lower scores are better. With --jsonl, answer
    whole folders into a JSON Lines file (--json then prints the run's counts)."""
    limit_pixels(ctx, max_pixels)
    request = search_request(k=k, class_wnid=class_wnid, any_class=any_class, exclude_self=exclude_self,
                             global_candidates=candidates, luminance_weight=luminance_weight,
                             rescue_candidates=rescue, class_choice=widen, rerank=not global_only)
    with user_errors():
        engine_options = _engine_options(engine, address, actors, workers, streams)
    if jsonl is not None:
        from ..batch_query import query_folder
        with user_errors("rerun the same command to answer the photos not yet in the file"):
            with open_index(index, backbone=backbone, weights=weights, device=device, runtime=runtime) as opened:
                summary = query_folder(opened, images, jsonl, batch_size=batch_size, workers=workers,
                                       streams=streams, progress=not quiet, engine=engine,
                                       engine_options=engine_options, request=request)
                network_note(opened)
        if as_json:
            print_json(asdict(summary))
            return
        note(f"{summary.answered} answered ({summary.failed} could not be read), {summary.already_done} "
             f"already in {summary.output}; {count(summary.queries, 'photo')} in all")
        return
    if engine != "local":
        from ..engines import check_query_engine
        with user_errors():
            check_query_engine(engine)
        raise typer.BadParameter(f"--engine {engine} answers batch queries: give --jsonl OUT.jsonl too",
                                 param_hint="--engine")
    folders = [str(image) for image in images if image.is_dir()]
    if folders:
        raise typer.BadParameter(f"{', '.join(folders)} is a folder: give --jsonl OUT.jsonl to answer every "
                                 "photo in it", param_hint="IMAGES")
    with user_errors():
        with open_index(index, backbone=backbone, weights=weights, device=device, runtime=runtime) as opened:
            responses = opened.search_batch(images, request=request)
            network_note(opened)
    if as_json:
        for response in responses:
            print_json_line(response.to_dict())
            for text in response.notes:
                note(f"{response.query}: {text}")
        return
    for response in responses:
        guess = response.predicted[0]
        typer.echo(f"{response.query}  (predicted {guess.name} {guess.probability:.0%}; "
                   f"{response.forward_ms:.0f} ms network, {response.search_ms:.1f} ms search)")
        for text in response.notes:
            note(text)
        typer.echo(f"{'rank':>4}  {'score':>7}  {'d_sem':>6}  {'d_lum':>6}  {'id':>7}  {'label':<24}  path")
        for result in response.results:
            typer.echo(f"{result.rank:>4}  {result.score:7.4f}  {result.semantic:6.4f}  {result.luminance:6.4f}  "
                       f"{result.id:>7}  {result.label_name[:24]:<24}  {result.path}")


@app.command("info")
def info_command(
    index: Optional[Path] = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    runtime: str = runtime_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON, with `writer` (who is "
                                 "writing the index now, or null), `pending` (an interrupted build waits) and "
                                 "`runtime` (what runs its network for queries here, and its cached graph)."),
) -> None:
    """Show how an index was built, what it holds, whether a writer is at work on it, and what runs its
    network for queries here."""
    with user_errors():
        from ..network import query_runtime
        from ..status import index_status

        status = index_status(resolve_index(index))
        queries = query_runtime(status.manifest.config, runtime)
    manifest = status.manifest
    if as_json:
        print_json({**manifest.to_dict(), "writer": status.writer, "pending": status.pending,
                    "runtime": asdict(queries)})
        return
    config, search = manifest.config, manifest.search
    removed = f", {manifest.removed_files} removed (kept out of builds)" if manifest.removed_files else ""
    typer.echo(f"{status.path}: {count(manifest.images, 'image')} in {count(manifest.classes, 'class')}, "
               f"{manifest.skipped} skipped{removed}; from {manifest.source}")
    typer.echo(f"generation {manifest.generation}: {len(manifest.segments)} segments, {manifest.tombstones} removed "
               f"images awaiting compaction")
    typer.echo(f"backbone {config.backbone} (weights {config.weights}), global {manifest.dims.get('global')}-d, "
               f"cells {config.grid}x{config.grid}x{manifest.dims.get('cell')}-d, PCA fitted on "
               f"{manifest.dims.get('fitted_on')} images; all-class search: {manifest.search_kind()}")
    graph = f" (graph {'cached' if queries.cached else 'exported on the first query'}: {queries.graph})" \
        if queries.graph else ""
    typer.echo(f"queries here run the network on {queries.runtime} {queries.version}{graph}")
    typer.echo(f"search defaults: {search.global_candidates} candidates, luminance weight "
               f"{search.luminance_weight}; built with {manifest.versions}")
    if status.writer:
        typer.echo(f"being written now by {status.writer}")
    elif status.pending:
        typer.echo("an interrupted build is pending: run the same `refsearch build-index` again to finish it")


@app.command("verify")
def verify_command(
    index: Optional[Path] = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON: index, generation, images, "
                                 "files, bytes_read, seconds, damaged (a file and its problem each), notes, "
                                 "sound."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Check that the index is whole, and name each damaged file.

    Every file of the published generation is read and checked against the size and checksum recorded
    when it was written; then the records, the segments, the FAISS files and the class statistics are
    checked against each other, and the record store page by page. It reads the whole index once (about
    10 GB at 1.28M images). Exits 0 when the index is sound, 2 when anything is damaged."""
    with user_errors():
        from ..verify import verify_index

        report = verify_index(resolve_index(index), progress=not quiet)
    if as_json:
        print_json(report.to_dict())
    else:
        for damage in report.damaged:
            typer.echo(f"damaged: {damage.file}: {damage.problem}")
    for text in report.notes:
        note(text)
    if not report.sound:
        files = ", ".join(dict.fromkeys(damage.file for damage in report.damaged))
        fail(f"{report.index} is damaged: {files}",
             f"restore those files from a backup, or rebuild the index with `refsearch build-index PHOTOS -o "
             f"{report.index} --rebuild`")
    if not as_json:
        typer.echo(f"{report.index}: sound; generation {report.generation}, {count(report.images, 'image')}, "
                   f"{count(report.files, 'file')} ({report.bytes_read / 1e6:,.1f} MB) checked in {report.seconds:.1f} s")


@app.command("compact")
def compact_command(
    index: Optional[Path] = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    wait: bool = typer.Option(False, "--wait", help="If another process is writing the index, wait for it."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON: generation, images, "
                                 "removed (the rows dropped)."),
) -> None:
    """Rewrite the index's segments without the images removed from it, reclaiming their space.

    Removing images only marks them (a tombstone each), so it costs milliseconds; run this now and then
    after many removals. Readers that opened the index before must reopen it afterwards."""
    with user_errors():
        from ..removal import compact_index

        summary = compact_index(resolve_index(index), wait=wait)
    if as_json:
        print_json(asdict(summary))
        return
    typer.echo(f"generation {summary.generation}: {count(summary.images, 'image')}, "
               f"{count(summary.removed, 'removed row')} dropped")


def _engine_options(engine: str, address: str | None, actors: int | None, workers: int | None,
                    streams: int | None) -> dict:
    from ..errors import InvalidArgumentError

    if engine != "ray" and (address is not None or actors is not None):
        raise InvalidArgumentError("--address and --actors are options of --engine ray")
    if engine == "ray" and (workers is not None or streams is not None):
        raise InvalidArgumentError("--workers and --streams are options of the local engine",
                                   "on Ray, decoding runs in Ray tasks and --actors sets how many actors run "
                                   "the network")
    return {"address": address, "actors": actors} if engine == "ray" else {}
