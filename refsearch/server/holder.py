"""How the app reaches its index: through a holder, so that an index that can be refreshed (a newer
generation of its files) is picked up per request, and one that cannot is simply kept."""
from __future__ import annotations

import threading
from typing import Any


class IndexHolder:
    """Gives the app the index to use for the request at hand.

    When the index object has a `refreshed()` method, each `current()` call returns what it returns
    (the same object while nothing changed); `generation` counts the changes, so caches built from an
    older index can be told apart. Closing a replaced index is left to whoever made it."""

    def __init__(self, index: Any):
        self._index = index
        self._lock = threading.Lock()
        self.generation = 0

    def current(self) -> Any:
        if not hasattr(self._index, "refreshed"):
            return self._index
        with self._lock:
            newer = self._index.refreshed()
            if newer is not self._index:
                self._index = newer
                self.generation += 1
            return self._index
