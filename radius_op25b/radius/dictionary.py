"""Locate and load radius-op25b's own RADIUS dictionary (the files in dictionaries/).
Installed: package data of radius_op25b.dictionaries; in a checkout: <repo>/dictionaries/."""

from __future__ import annotations

import functools
import importlib.resources
import pathlib

import pyrad.dictionary

_MAIN_FILE = "dictionary"


def _packaged_path() -> pathlib.Path | None:
    """The main file shipped as package data, or None outside an install."""
    try:
        resource = importlib.resources.files("radius_op25b.dictionaries") / _MAIN_FILE
    except ModuleNotFoundError:
        return None
    # pyrad opens the file by path and reads the $INCLUDEd siblings from its directory,
    # so only a real file on disk will do (not one inside a zip).
    if isinstance(resource, pathlib.Path) and resource.is_file():
        return resource
    return None


def dictionary_path() -> pathlib.Path:
    """Path of the main dictionary file: the packaged one, else <repo>/dictionaries/dictionary."""
    packaged = _packaged_path()
    if packaged is not None:
        return packaged
    return pathlib.Path(__file__).resolve().parents[2] / "dictionaries" / _MAIN_FILE


@functools.lru_cache(maxsize=1)
def load_dictionary() -> pyrad.dictionary.Dictionary:
    """Our dictionary, parsed once per process. Treat the result as read-only: it is shared."""
    return pyrad.dictionary.Dictionary(str(dictionary_path()))
