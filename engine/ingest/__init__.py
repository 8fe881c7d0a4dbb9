"""Evidence files → normalised events in a case."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pipeline import FileResult, IngestReport, Progress, ingest

__all__ = ["FileResult", "IngestReport", "Progress", "ingest"]


def __getattr__(name: str) -> Any:
    # The pipeline (pyarrow, the EVTX parsers) loads on first use: commands that only read a case
    # import engine.ingest.normalise for its SQL and would otherwise pay ~0.4 s for nothing.
    if name in __all__:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
