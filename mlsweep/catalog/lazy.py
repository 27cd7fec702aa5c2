"""Lazy pointers from catalog entries to their implementations.

An entry names its builder as `"module:attribute"`, so reading the catalog (validating a sweep
file, printing help) never imports torch; the trainer resolves the pointer when it builds.
"""

from __future__ import annotations

import importlib
from typing import Any


def load(pointer: str) -> Any:
    """The object `"package.module:attribute"` names."""
    module, _, attribute = pointer.partition(":")
    return getattr(importlib.import_module(module), attribute)
