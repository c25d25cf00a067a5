"""The `genreg` command line: one subcommand per stage, all reading params.yaml.

Each subcommand lives in `genreg.adapters.commands.<name>` with a `HELP` line,
`add_arguments(parser)` and `run(args, cfg) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from genreg.checkpoint import CheckpointError
from genreg.config import Config, ConfigError, load_params, parse_override
from genreg.datasets import DataError

COMMANDS = ("fetch", "prepare", "train", "evaluate", "analyze", "serve", "tune")

DESCRIPTION = """\
GENREG: gradient-free training of neural networks by trust-based evolution.

The pipeline is fetch -> prepare -> train -> evaluate -> analyze; every stage
reads params.yaml (sections data, model, strategy, train, evaluate, analyze) and
accepts -S key=value overrides, e.g. -S strategy.mutation_scale=0.05.

examples:
  genreg fetch                           # MNIST into data/raw/mnist: downloaded, or
                                         # copied from GENREG_DATA_DIR if set
  genreg prepare                         # split it into data/prepared
  genreg train -S train.num_generations=50
  genreg train --max-seconds 600         # stop after ten minutes, checkpointed
  genreg train --resume                  # continue an interrupted run exactly
  genreg evaluate                        # best genome on the test set, numpy on the CPU
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genreg",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"genreg.adapters.commands.{name}")
        cmd = sub.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_argument(
            "-p",
            "--params",
            type=Path,
            default=Path("params.yaml"),
            help=(
                "params file (default: params.yaml; embedded defaults if it is absent)"
            ),
        )
        cmd.add_argument(
            "-S",
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=(
                "override a params key, e.g. -S strategy.mutation_scale=0.05 "
                "(repeatable)"
            ),
        )
        module.add_arguments(cmd)
        cmd.set_defaults(handler=module.run)
    return parser


def load_config(params: Path, overrides: Sequence[str]) -> Config:
    """params.yaml (or the embedded defaults if the default is absent) + overrides."""
    pairs = dict(parse_override(text) for text in overrides)
    if not params.exists() and params == Path("params.yaml"):
        from genreg.config import build_config, unflatten

        return build_config(unflatten(pairs))
    return load_params(params, pairs)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.params, args.overrides)
        return args.handler(args, cfg)
    except (ConfigError, DataError, CheckpointError) as exc:
        print(f"genreg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"genreg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
