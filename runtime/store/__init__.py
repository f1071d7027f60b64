"""Durable runs: stores that keep every record of every run, and rebuild runs from them.

A store is a :class:`~runtime.Recorder`: give it to a Flow
(``Flow(..., store=store)``) and every record of every run is written as it
happens. :class:`SQLiteStore` keeps them in one SQLite file.
"""

from ._base import RunSummary as RunSummary
from ._base import Store as Store
from ._sqlite import SCHEMA_VERSION as SCHEMA_VERSION
from ._sqlite import SQLiteStore as SQLiteStore

__all__ = ["SCHEMA_VERSION", "RunSummary", "SQLiteStore", "Store"]
