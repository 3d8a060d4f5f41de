"""The network an index was built with, for everything that reads the index: loaded once, on first use,
and checked against the weights fingerprint the index records. It is the one owner of the network on the
query side; whatever runs it, it turns prepared images into raw features."""
from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .config import IndexConfig
from .errors import ConfigMismatchError
from .features import PreparedImage, RawFeatures, extract

if TYPE_CHECKING:
    from .backbones import Backbone


class IndexNetwork:
    """The backbone of `config`, with `weights` (None: the backbone's default, or whichever of its named
    weights the index was built with), on `device`. `where` names the index in messages."""

    def __init__(self, config: IndexConfig, weights: str | os.PathLike | None, device: str, where: object):
        self.config, self.weights, self.device, self.where = config, weights, device, where
        self._backbone: Backbone | None = None
        self._loading = threading.Lock()

    @property
    def input_size(self) -> int:
        """The square the network sees (recorded when the index was built; known without loading it)."""
        return self.config.input_size

    @property
    def loaded(self) -> bool:
        return self._backbone is not None

    @property
    def backbone(self) -> Backbone:
        """The backbone that built the index, loaded on first use and checked against its weights."""
        with self._loading:
            if self._backbone is None:
                self._backbone = self._load()
            return self._backbone

    def load(self) -> "IndexNetwork":
        """Load the network now (e.g. before timing its passes, or to check its weights early)."""
        _ = self.backbone
        return self

    def raw_features(self, prepared: Sequence[PreparedImage]) -> RawFeatures:
        return extract(self.backbone, list(prepared))

    def _load(self) -> Backbone:
        # Imported here: an index opened only to read records or search described queries needs no
        # network, and torch alone takes about half a gigabyte.
        from .backbones import create_backbone

        config = self.config
        backbone = create_backbone(config.backbone, weights=self.weights, device=self.device,
                                   input_size=config.input_size)
        if self.weights is None and config.weights and backbone.fingerprint != config.weights:
            # The index names other weights than the backbone's default: one of its named weights, if any.
            for name in backbone.named_weights:
                other = create_backbone(config.backbone, weights=name, device=self.device,
                                        input_size=config.input_size)
                if other.fingerprint == config.weights:
                    return other
        if config.weights and backbone.fingerprint != config.weights:
            raise ConfigMismatchError(
                f"{self.where} was built with other {config.backbone} weights (fingerprint {config.weights}, "
                f"these are {backbone.fingerprint})", "pass the same --weights")
        return backbone
