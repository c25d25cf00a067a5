"""A runner callback that sends per-generation metrics to MLflow, losing none.

Points are buffered and sent with one `MlflowClient.log_batch` call per `flush_every`
generations. If the store goes away mid-run, training goes on and the points wait for
the next flush; `close()` sends the rest or writes them to a JSONL file (sent later by
`upload_pending`, which `genreg train --resume` calls) and raises `TrackingError`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

MAX_METRICS = 1000  # MLflow's log_batch limit per call
log = logging.getLogger(__name__)


class TrackingError(ValueError):
    """The tracking store is unreachable or lost metrics; the message names the URI."""


class MlflowCallback:
    """Runner callback: buffers per-generation metrics, sends them with log_batch."""

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        flush_every: int = 50,
        *,
        pending_path: Path | None = None,
        skip_through: int = -1,
    ) -> None:
        if not run_id:
            raise ValueError(
                "MlflowCallback: run_id is required (no active run is assumed)"
            )
        if flush_every < 1:
            raise ValueError(
                f"MlflowCallback: flush_every must be >= 1, got {flush_every}"
            )
        self.client, self.run_id, self.flush_every = client, run_id, flush_every
        self.pending_path = pending_path
        self.skip_through = skip_through  # generations already in the run (resume)
        self.pending: list[Metric] = []
        self.last_error: Exception | None = None
        self._since_flush = 0

    def on_generation(self, generation: int, metrics: Mapping[str, float]) -> None:
        """Buffer one generation's metrics (step = generation); flush now and then."""
        if generation <= self.skip_through:
            return
        stamp = int(time.time() * 1000)
        self.pending += [
            Metric(k, float(v), stamp, generation) for k, v in metrics.items()
        ]
        self._since_flush += 1
        if self._since_flush >= self.flush_every:
            self._since_flush = 0
            self.flush()

    def flush(self) -> bool:
        """Send the buffer; on failure keep it for the next try. True if all sent."""
        while self.pending:
            chunk = self.pending[:MAX_METRICS]
            try:
                self.client.log_batch(self.run_id, metrics=chunk)
            except Exception as exc:  # any store failure must not stop training
                if self.last_error is None:
                    log.warning(
                        "MLflow unreachable, keeping %d points: %s",
                        len(self.pending),
                        exc,
                    )
                self.last_error = exc
                return False
            del self.pending[: len(chunk)]
        self.last_error = None
        return True

    def close(self) -> None:
        """Send the rest; if that fails, save it as JSONL and raise TrackingError."""
        if self.flush():
            return
        uri = self.client.tracking_uri
        if self.pending_path is None:
            raise TrackingError(
                f"{len(self.pending)} points not sent to {uri}: {self.last_error}"
            )
        with self.pending_path.open("a") as handle:
            for m in self.pending:
                row = {
                    "key": m.key,
                    "value": m.value,
                    "timestamp": m.timestamp,
                    "step": m.step,
                }
                handle.write(json.dumps(row) + "\n")
        count, self.pending = len(self.pending), []
        raise TrackingError(
            f"{count} metric points of run {self.run_id} could not be sent to {uri} "
            f"({self.last_error}); saved to {self.pending_path}; once the store is "
            "back, `genreg train --resume` or upload_pending() sends them"
        )


def upload_pending(client: MlflowClient, run_id: str, path: Path) -> int:
    """Send metric points saved by MlflowCallback.close(), then delete the file."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    metrics = [Metric(r["key"], r["value"], r["timestamp"], r["step"]) for r in rows]
    for start in range(0, len(metrics), MAX_METRICS):
        client.log_batch(run_id, metrics=metrics[start : start + MAX_METRICS])
    path.unlink()
    return len(metrics)
