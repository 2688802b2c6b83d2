"""`python -m jammi_assets.run_worker INPUT_JSON`: Dagster's run worker (`dagster api
execute_run INPUT_JSON`, the process the default run launcher starts) with the sleeping
pool-slot waits of jammi_assets.run_guard, so the partitions of a backfill that wait for the
`embedding_model` pool sleep instead of spinning (Dagster 1.13's in-process executor re-checks
without sleeping). The waiting lines go to stderr, the worker's log.

The worker is Dagster's own command, run in this process as `python -m dagster` runs it
(runpy): an internal command, but the one every run launcher starts (the Kubernetes and Docker
launchers in images of other Dagster versions too), so its name and input stay put where
Dagster's modules may not. tests/test_dagster_private.py checks it is still there."""

from __future__ import annotations

import runpy
import sys


def main(argv: list[str]) -> None:
    """Run `dagster api execute_run` with `argv` in this process, slot waits sleeping; exits
    with the command's status, as the command does."""
    from jammi_assets import run_guard

    sys.argv = ["dagster", "api", "execute_run", *argv]
    with run_guard.sleeping_slot_waits(lambda line: print(line, file=sys.stderr, flush=True)):
        runpy.run_module("dagster", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
