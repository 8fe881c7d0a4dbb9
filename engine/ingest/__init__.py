"""Evidence files → normalised events in a case."""

from .pipeline import FileResult, IngestReport, Progress, ingest

__all__ = ["FileResult", "IngestReport", "Progress", "ingest"]
