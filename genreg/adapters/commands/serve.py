"""Serve the Prefect pipeline (prepare -> train -> evaluate -> analyze) on this machine.

Registers a deployment of pipelines.flows:genreg_pipeline with a cron schedule
(default nightly at 02:00, "0 2 * * *") and runs its flow runs in this process until
interrupted. With PREFECT_API_URL set it uses that server; otherwise it starts a local
Prefect server for as long as it runs (SQLite in $PREFECT_HOME, default ~/.prefect;
log in .cache/prefect-server.log), because Prefect's ephemeral API has no scheduler.
-p/-S are passed to every scheduled run as params_path/overrides.

example (a run every minute, tiny settings):
  genreg serve --cron "* * * * *" -S strategy.population_size=8 \\
      -S train.num_generations=3
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from genreg.config import Config, parse_override

HELP = "serve the Prefect pipeline with its cron schedule on this machine"

SERVER_LOG = Path(".cache") / "prefect-server.log"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cron",
        default="0 2 * * *",
        help='schedule (default "0 2 * * *": nightly 02:00)',
    )
    parser.add_argument("--name", default="genreg-nightly", help="deployment name")
    parser.add_argument(
        "--data", type=Path, default=Path("data/prepared"), help="prepared data"
    )
    parser.add_argument(
        "--runs", type=Path, default=Path("runs"), help="stage outputs folder"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="local server port (default: a free one)"
    )


def run(args: argparse.Namespace, cfg: Config) -> int:
    from genreg.analysis import ensure_numba_cache

    ensure_numba_cache()
    del cfg  # built only to validate -p/-S before serving; each run rebuilds it
    overrides = dict(parse_override(text) for text in args.overrides)
    parameters = {
        "params_path": str(args.params),
        "overrides": overrides or None,
        "data_dir": str(args.data),
        "run_dir": str(args.runs),
    }
    with api_server(args.port) as url:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from pipelines.flows import genreg_pipeline

        with temporary_settings({PREFECT_API_URL: url}):
            # limit=1: a run still going when the next is due must not share run_dir
            genreg_pipeline.serve(
                name=args.name, cron=args.cron, parameters=parameters, limit=1
            )
    return 0


@contextmanager
def api_server(port: int = 0, timeout: float = 180.0) -> Iterator[str]:
    """PREFECT_API_URL if set, else a local `prefect server start` (scheduler on)."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    with local_server(port, SERVER_LOG, timeout=timeout) as url:
        os.environ["PREFECT_API_URL"] = url  # read when prefect is first imported
        print(f"genreg serve: Prefect server at {url} (log: {SERVER_LOG})", flush=True)
        yield url


@contextmanager
def local_server(
    port: int,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 180.0,
) -> Iterator[str]:
    """`prefect server start --no-ui` on 127.0.0.1:`port` (0: a free one) until exit.

    Yields its API URL once /health answers; `env` (default: this process's) decides
    PREFECT_HOME, hence the SQLite database it uses.
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}/api"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port"]
    with log_path.open("ab") as log:
        server = subprocess.Popen(
            [*command, str(port), "--no-ui"],
            stdout=log,
            stderr=log,
            env=None if env is None else dict(env),
        )
    try:
        _wait_healthy(server, url, timeout, log_path)
        yield url
    finally:
        stop_process(server)


def stop_process(process: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `grace_s` seconds."""
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(
    server: subprocess.Popen, url: str, timeout: float, log_path: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(
                f"prefect server exited ({server.returncode}); see {log_path}"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise RuntimeError(
        f"prefect server not healthy after {timeout:.0f} s; see {log_path}. On a slow "
        "machine start it yourself (`prefect server start`), wait for it, and set "
        "PREFECT_API_URL=http://127.0.0.1:4200/api"
    )
