"""Exceptions of the data package; every message names the file it is about."""

from __future__ import annotations


class DataError(ValueError):
    """A data file is missing, corrupt, or not in the expected format."""


class MissingDataError(DataError):
    """A required file is not on disk and may not (or could not) be downloaded."""


class ChecksumError(DataError):
    """A downloaded file does not match its published checksum."""


class DownloadError(DataError):
    """A file could not be downloaded from any of its locations."""
