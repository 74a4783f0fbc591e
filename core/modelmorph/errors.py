"""Errors with one-line messages and the CLI exit status each one maps to.

Library code raises these and never calls ``sys.exit``; the CLI turns them into
``modelmorph: error: <message>`` and the exit code below.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_DIFFERENT = 1  # `diff` found differences
EXIT_USAGE = 2  # bad command line (argparse uses 2 as well)
EXIT_UNKNOWN_FORMAT = 3
EXIT_READ = 4
EXIT_WRITE = 5
EXIT_STRICT = 6  # --strict and the conversion produced diagnostics


class ModelmorphError(Exception):
    """Base class; ``str(error)`` is a complete one-line message."""

    exit_code = EXIT_READ


class UsageError(ModelmorphError):
    exit_code = EXIT_USAGE


class UnknownFormatError(ModelmorphError):
    exit_code = EXIT_UNKNOWN_FORMAT


class FileError(ModelmorphError):
    """A problem with a named file: the message starts with the path."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ReadError(FileError):
    """The input is unreadable, malformed, hostile or unsupported."""

    exit_code = EXIT_READ


class WriteError(FileError):
    """The output could not be written (or the model cannot be expressed in the target)."""

    exit_code = EXIT_WRITE


class ArchitectureOnly(ReadError):
    """The source holds an architecture and no weights, and the target stores weights with it:
    a problem of the input (named in the message), not of the output. ``migrate`` reports such
    a file as skipped, not failed: there is nothing to migrate."""


class StrictError(ModelmorphError):
    exit_code = EXIT_STRICT


class Inexpressible(Exception):
    """The model holds something the target cannot express at all, found where the output's
    path is not known (e.g. while translating a config): the API reports it as a
    :class:`WriteError` naming the output. Not for what a diagnostic can carry."""


class CannotHandle(Exception):
    """Raised by a reader that finds the file is not its format after all (not a failure):
    detection passes the file to the next candidate format, as imageio's plugins decline.
    Deliberately not a :class:`ModelmorphError`: it never reaches the user as such."""
