"""Prefect's temporary API server, given time for a slow first start.

A flow called from Python with no PREFECT_API_URL makes Prefect start a temporary API
server in a subprocess and wait PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS for it
(Prefect's default: 20). The first start on a fresh PREFECT_HOME also creates and
migrates its SQLite database, which on a busy 2-core machine takes longer than that.
`flow` here is `prefect.flow` whose calls raise that default to STARTUP_TIMEOUT_S (a
value set in the environment or the Prefect profile wins) and turn a timeout that still
happens into PrefectStartError, which says what to set.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from prefect import Flow
from prefect.settings import (
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    temporary_settings,
)

P = ParamSpec("P")
R = TypeVar("R")

STARTUP_TIMEOUT_S = 300
STARTUP_TIMEOUT_VAR = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
# the RuntimeError prefect.server.api.server.SubprocessASGIServer.start raises
_PREFECT_TIMEOUT = "Timed out while attempting to connect to ephemeral Prefect API"


class PrefectStartError(RuntimeError):
    """Prefect's temporary API server did not start in time; says what to set."""


@contextmanager
def patient_api_start() -> Iterator[int]:
    """Inside, the startup timeout defaults to STARTUP_TIMEOUT_S; yields its value."""
    with temporary_settings(
        set_defaults={
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: STARTUP_TIMEOUT_S
        }
    ):
        waited = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
        try:
            yield waited
        except RuntimeError as exc:
            if not str(exc).startswith(_PREFECT_TIMEOUT):
                raise
            raise PrefectStartError(
                f"Prefect's temporary API server did not start within {waited} s "
                "(its first start on a fresh PREFECT_HOME creates the database; a "
                f"busy machine is slower). Set {STARTUP_TIMEOUT_VAR} higher, e.g. "
                f"export {STARTUP_TIMEOUT_VAR}={max(2 * waited, STARTUP_TIMEOUT_S)}; "
                "or start a server once (`prefect server start`) and point the "
                "flows at it: export PREFECT_API_URL=http://127.0.0.1:4200/api"
            ) from exc


class PatientFlow(Flow[P, R]):
    """A Flow whose calls from Python run inside patient_api_start()."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with patient_api_start():
            return super().__call__(*args, **kwargs)


def flow(**options: Any) -> Callable[[Callable[P, R]], PatientFlow[P, R]]:
    """`prefect.flow(**options)` for a sync function, as a PatientFlow."""

    def decorate(fn: Callable[P, R]) -> PatientFlow[P, R]:
        if inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"{fn.__name__}: pipelines.prefect_api.flow is for sync flows"
            )
        return PatientFlow(fn, **options)

    return decorate
