"""`serve`: the web page and HTTP API over one index (the web packages are imported only here)."""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Optional

import typer

from ..wording import count
from .app import app
from .common import (INDEX_HELP, limit_pixels, max_pixels_option, network_note, note, open_index, runtime_option,
                     user_errors)

# Shorter tokens can be guessed by trying: a made-up one has 32 characters.
MIN_TOKEN_LENGTH = 16


@app.command("serve")
def serve_command(
    ctx: typer.Context,
    index: Optional[Path] = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. The default answers this "
                             "machine only; on any other address every request needs the server's token "
                             "(--token, else one made up and printed in the URL)."),
    allow_host: Optional[list[str]] = typer.Option(None, "--allow-host", help="Also answer requests naming "
                                                   "this host (repeatable; * for any): the names of the "
                                                   "address listened on and of loopback are answered, "
                                                   "others refused, so that no other site's page can reach "
                                                   "the server through its own name."),
    token: Optional[str] = typer.Option(None, "--token", help="The token every request must carry "
                                        "(Authorization: Bearer TOKEN, or ?token=TOKEN once in the "
                                        "browser). Needed beyond loopback: made up if not given."),
    port: int = typer.Option(8000, "--port", "-p", min=0, max=65535, help="Port (0: any free one)."),
    max_upload_mb: float = typer.Option(32.0, "--max-upload-mb", min=0.001, help="Largest upload accepted, "
                                        "in MB (larger: 413)."),
    max_pixels: int = max_pixels_option(),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Backbone weights file, as at build "
                                           "time."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda, for the network."),
    runtime: str = runtime_option(),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="Log each request."),
) -> None:
    """Serve a page and an HTTP API over the index: drop a photo, see its references, colorize it, and
    review duplicates, outliers and clusters. The index and the network load once; Ctrl-C stops.

    Nothing over HTTP changes the index, and no request names a file on this machine: images are
    served by their index id. docs/serve.md describes the API."""
    from .. import errors

    limit_pixels(ctx, max_pixels)
    with user_errors():
        try:
            from ..server import ServerSettings, create_app, listen, serve, url_of
            from ..server.runner import is_loopback
            from ..server.trust import Trust
        except ImportError as exc:
            raise errors.IndexStateError(f"refsearch serve needs FastAPI, uvicorn and python-multipart "
                                         f"({exc}); pip install fastapi uvicorn python-multipart") from None
        if token is not None and len(token) < MIN_TOKEN_LENGTH:
            raise errors.InvalidArgumentError(f"a token of {len(token)} characters is too easy to guess",
                                              f"give one of at least {MIN_TOKEN_LENGTH}")
        if token is None and not is_loopback(host):
            token = secrets.token_urlsafe(24)
        trust = Trust(bound=host, allowed_hosts=tuple(allow_host or ()), token=token)
        settings = ServerSettings(max_upload_bytes=max(1, round(max_upload_mb * 1024 * 1024)),
                                  max_pixels=max_pixels, trust=trust)
        opened = open_index(index, weights=weights, device=device, runtime=runtime)
    try:
        with user_errors():
            try:
                sock = listen(host, port)
            except OSError as exc:
                raise errors.InvalidArgumentError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                                                  "choose another --port or --host") from None
            try:
                opened.network.load()  # now, not on the first request
            except BaseException:
                sock.close()
                raise
        network_note(opened)
        if not is_loopback(host):
            note(f"serving on {host}: whoever has the token can search the index and read every indexed "
                 "image (read-only); the connection is not encrypted")
        url = url_of(sock) + (f"?token={token}" if token else "")
        typer.echo(f"refsearch serve: {url}  ({count(len(opened), 'image')}, {opened.config.backbone}; "
                   "Ctrl-C to stop)")
        serve(create_app(opened, settings), sock, access_log=access_log)
        typer.echo("stopped")
    finally:
        opened.close()
