"""`python -m jammi_assets.run_worker INPUT_JSON`: Dagster's run worker (`dagster api
execute_run`, what the default run launcher starts) with the sleeping pool-slot waits of
jammi_assets.run_guard, so the partitions of a backfill that wait for the `embedding_model`
pool sleep instead of spinning (Dagster 1.13's in-process executor re-checks without sleeping).
The waiting lines go to stderr, the worker's log."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    from dagster._cli.api import execute_run_command

    from jammi_assets import run_guard

    with run_guard.sleeping_slot_waits(lambda line: print(line, file=sys.stderr, flush=True)):
        execute_run_command.main(args=argv, prog_name="jammi_assets.run_worker")


if __name__ == "__main__":
    main(sys.argv[1:])
