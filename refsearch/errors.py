"""The errors refsearch raises for problems a user can fix: one hierarchy, each with a message and a hint.

Only the command line turns these into `error:` lines; anything else that escapes is a bug and keeps its
traceback. Each class also derives from the built-in exception it replaces, so `except ValueError` and
`except KeyError` written against earlier versions still catch what they caught.
"""
from __future__ import annotations

# The OSErrors that are about the user's own files and folders (a missing photo, a file where a folder
# should be, no permission); any other OSError is reported as a bug, with its traceback.
USER_FILE_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError)


class RefsearchError(Exception):
    """A problem with the user's input, files or index, explained in `message`, with what to do in `hint`."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}; {self.hint}"

    def __reduce__(self):  # args holds only the message; keep the hint through pickling
        return type(self), (self.message, self.hint)


class InvalidArgumentError(RefsearchError, ValueError):
    """An argument or setting out of its range."""


class NotFoundError(RefsearchError, KeyError):
    """An id, path or name that the index or a registry does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return RefsearchError.__str__(self)


class ConfigMismatchError(RefsearchError, ValueError):
    """An index and a request disagree on how the index was built."""


class IndexStateError(RefsearchError, RuntimeError):
    """An index that cannot be used as it is: missing, empty, from another format, or inconsistent."""


class IndexLockedError(IndexStateError):
    """Another process is writing to the index."""


class IndexDamagedError(IndexStateError):
    """A file of the index is missing, cut short, or no longer what was written; the message names it
    (and, until pickled, `file` and `problem` tell them apart)."""

    def __init__(self, message: str, hint: str = "", *, file=None, problem: str | None = None):
        super().__init__(message, hint)
        self.file = file
        self.problem = problem


class DiskFullError(IndexStateError):
    """The disk (or the user's quota) filled up while an index was being written; what was published
    before is intact, and rerunning the same command after freeing space finishes the work."""


class OutputLockedError(RefsearchError, RuntimeError):
    """Another process is writing the same output file."""


class BackboneError(RefsearchError, RuntimeError):
    """A backbone that cannot be built or loaded: the message says why, the hint what to do."""


class GraphExportError(RefsearchError, RuntimeError):
    """A backbone that cannot be exported to the inference runtime's graph, or whose graph computes
    something else than the backbone: it runs on torch instead."""
