"""ashiato's engine: case files, ingest, the filter language and the queries both faces use.

Never imports textual or rich: the CLI and the TUI are thin faces over this library.
"""

from .case import Case, CaseError

__all__ = ["Case", "CaseError"]
