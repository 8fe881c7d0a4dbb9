"""ashiato's engine: case files, ingest, the filter language and the queries both faces use.

Never imports textual or rich: the CLI and the TUI are thin faces over this library.
"""

from .case import Case, CaseBusy, CaseError, open_for_reading

__all__ = ["Case", "CaseBusy", "CaseError", "open_for_reading"]
