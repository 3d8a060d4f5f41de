"""What a search is asked: `SearchRequest`, checked once, where it is made.

The command line, the HTTP API, the batch engines and the Python API all build one and hand it on. Its
errors name the options as the caller names them: a `SearchRequestError` can be worded again with
another interface's names for the same fields (`--candidates` on the command line, `candidates` in the
HTTP API).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from . import classes
from .config import CLASS_CHOICES, SearchSettings
from .errors import InvalidArgumentError, NotFoundError

# How the library names each field in its messages.
FIELD_NAMES = {"k": "k", "class_wnid": "class", "any_class": "any_class", "exclude_self": "exclude_self",
               "global_candidates": "global candidates", "luminance_weight": "luminance_weight",
               "rescue_candidates": "rescue_candidates", "class_choice": "class_choice", "rerank": "rerank"}


class SearchRequestError(InvalidArgumentError):
    """Search options that cannot be searched with. `fields` are those at fault (two when they contradict
    each other); `worded(names)` gives the message and hint with the fields named by `names`."""

    def __init__(self, fields: tuple[str, ...], message: str, hint: str = "", **values):
        self.fields, self._templates, self._values = fields, (message, hint), values
        super().__init__(*self.worded(FIELD_NAMES))

    def worded(self, names: Mapping[str, str]) -> tuple[str, str]:
        named = {field: names.get(field, FIELD_NAMES[field]) for field in FIELD_NAMES}
        return tuple(text.format(**named, **self._values) for text in self._templates)

    def __reduce__(self):
        return _rebuilt, (type(self), self.fields, self._templates, self._values)


class UnknownClassError(SearchRequestError, NotFoundError):
    """A class to search that is not one of the network's."""


def _rebuilt(kind, fields, templates, values) -> SearchRequestError:
    return kind(fields, *templates, **values)


@dataclass(frozen=True)
class SearchRequest:
    """One search: the `k` best references, restricted to the predicted class (or `class_wnid`, or none
    with `any_class`), widened to other classes when too few images are there (`class_choice`: how), the
    `global_candidates` best by global cosine re-ranked by d_sem + `luminance_weight` * d_lum (or kept in
    global order without `rerank`), with the images among the `rescue_candidates` best of all classes that
    are closer than any of the searched classes; indexed copies of the query left out with
    `exclude_self`. Options left None take the index's search settings."""

    k: int = 10
    class_wnid: str | None = None
    any_class: bool = False
    exclude_self: bool = False
    global_candidates: int | None = None
    luminance_weight: float | None = None
    rescue_candidates: int | None = None
    class_choice: str | None = None
    rerank: bool = True

    def __post_init__(self) -> None:
        if self.k < 1:
            raise SearchRequestError(("k",), "{k} must be at least 1, got {value}", value=self.k)
        if self.class_wnid is not None and self.any_class:
            raise SearchRequestError(("class_wnid", "any_class"), "{class_wnid} and {any_class} exclude each other")
        if self.class_wnid is not None and not classes.is_wnid(self.class_wnid):
            raise UnknownClassError(("class_wnid",), "{class_wnid} {value!r} is not an ImageNet-1k WordNet id",
                                     "give a wnid like n01440764", value=self.class_wnid)
        if self.global_candidates is not None and self.global_candidates < self.k:
            raise SearchRequestError(
                ("global_candidates", "k"), "{global_candidates} ({value}) must be at least {k} ({k_value})",
                "{value} is fewer than k={k_value}: the re-rank orders the candidates, so it cannot return more "
                "than them; give {global_candidates} {k_value} or more, or a smaller {k}",
                value=self.global_candidates, k_value=self.k)
        if self.luminance_weight is not None and not math.isfinite(self.luminance_weight):
            raise SearchRequestError(("luminance_weight",), "{luminance_weight} must be a finite number, got {value}",
                                     value=self.luminance_weight)
        if self.luminance_weight is not None and self.luminance_weight < 0:
            raise SearchRequestError(("luminance_weight",), "{luminance_weight} must be at least 0, got {value}",
                                     value=self.luminance_weight)
        if self.rescue_candidates is not None and self.rescue_candidates < 0:
            raise SearchRequestError(("rescue_candidates",), "{rescue_candidates} must be at least 0, got {value}",
                                     value=self.rescue_candidates)
        if self.class_choice is not None and self.class_choice not in CLASS_CHOICES:
            raise SearchRequestError(("class_choice",), "{class_choice} must be one of "
                                     f"{', '.join(CLASS_CHOICES)}, got {{value!r}}", value=self.class_choice)

    def settings(self, defaults: SearchSettings) -> SearchSettings:
        """The search settings this request runs with: `defaults` with the options it sets."""
        return defaults.with_(global_candidates=self.global_candidates, luminance_weight=self.luminance_weight,
                              rescue_candidates=self.rescue_candidates, class_choice=self.class_choice)

    def params(self, settings: SearchSettings) -> dict:
        """How the search was asked, as responses report it."""
        return {"k": self.k, "global_candidates": max(self.k, settings.global_candidates),
                "luminance_weight": settings.luminance_weight, "rerank": self.rerank,
                "rescue_candidates": settings.rescue_candidates, "class_choice": settings.class_choice,
                "class": self.class_wnid, "any_class": self.any_class, "exclude_self": self.exclude_self}



def search_request(request: SearchRequest | None, k: int = 10, **options) -> SearchRequest:
    """`request` as given (and then `k` is its own), or one made of `k` and the options."""
    if request is None:
        return SearchRequest(k, **options)
    if options:
        raise InvalidArgumentError("give the search options in the request or as arguments, not both")
    return request
