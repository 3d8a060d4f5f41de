"""`refsearch serve`: the HTTP API and the page over one opened index (FastAPI, run by uvicorn).

Imported only by the serve command and by whoever embeds the app, so that the rest of refsearch does not
need its web packages to start."""
from __future__ import annotations

from .app import create_app
from .holder import IndexHolder
from .runner import BackgroundServer, listen, serve, url_of
from .settings import ServerSettings

__all__ = ["BackgroundServer", "IndexHolder", "ServerSettings", "create_app", "listen", "serve", "url_of"]
