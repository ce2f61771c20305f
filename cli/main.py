"""The `recommender` command: one subcommand per job (simulate, validate, train, rank,
evaluate, serve, export, store, models, ...). Each subcommand lives in a module of its own under
cli/commands/ and registers itself here."""
from __future__ import annotations

import argparse
import importlib
import sys

from recommender.errors import ConfigError, ContractError

COMMAND_MODULES = (
    "cli.commands.simulate",
    "cli.commands.validate",
    "cli.commands.train",
    "cli.commands.rank",
    "cli.commands.explain",
    "cli.commands.quality",
    "cli.commands.serve",
    "cli.commands.export",
    "cli.commands.store",
    "cli.commands.models",
    "cli.commands.arms",
    "cli.commands.goals",
    "cli.commands.retrain",
    "cli.commands.evaluate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recommender", description="Personalized banner ranking engine")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:
        # before any command module imports numpy: one BLAS/OpenMP thread per server worker
        from .commands.serve import limit_threads

        limit_threads()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ContractError as e:
        if len(e.errors) == 1 and not e.truncated:
            print(f"error: {e}", file=sys.stderr)
        else:
            print(f"error: input breaks its contract:\n{e}", file=sys.stderr)
        return 2
    except ConfigError as e:  # a --config file: one line naming it (and the field)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
