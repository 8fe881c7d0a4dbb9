"""A worker that raised reaches the status bar.

Every worker runs with `exit_on_error=False` (a failed query must not end the program), and
Textual's `Worker.StateChanged` does not bubble: it reaches only the node that started the
worker. So each screen and widget that runs workers mixes this in, and the app says what failed
on the screen on top (AshiatoApp.worker_failed), besides what a worker reports itself.
"""

from __future__ import annotations

from typing import Any

from textual.worker import Worker, WorkerState


class ReportsWorkerFailures:
    app: Any

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.app.worker_failed(event.worker)
