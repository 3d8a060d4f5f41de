"""A registry of named factories that other packages extend through an entry point group, the shape
shared by backbones and colorize methods."""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Callable, Generic, TypeVar

from .errors import RefsearchError

Factory = TypeVar("Factory", bound=Callable)


class Registry(Generic[Factory]):
    def __init__(self, kind: str, entry_point_group: str, error: type[RefsearchError]):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.error = error
        self._factories: dict[str, Factory] = {}

    def register(self, name: str) -> Callable[[Factory], Factory]:
        def add(factory: Factory) -> Factory:
            self._factories[name] = factory
            return factory

        return add

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._factories)

    def get(self, name: str) -> Factory:
        if name not in self._factories:
            self._load_entry_points()
        if name not in self._factories:
            raise self.error(f"unknown {self.kind} {name!r}", f"available: {', '.join(self.names())}")
        return self._factories[name]

    def _load_entry_points(self) -> None:
        for entry in entry_points(group=self.entry_point_group):
            if entry.name in self._factories:
                continue
            try:
                self._factories[entry.name] = entry.load()
            except Exception as exc:
                raise self.error(f"{self.kind} plugin {entry.name!r} ({entry.value}) failed to load: "
                                 f"{type(exc).__name__}: {exc}",
                                 f"fix or uninstall the package that provides {entry.name!r}") from exc
