"""The `jammi` console script: the engine's command line (jammi.cli) with the Dagster runner
plugged in for the commands that run the asset graph. Dagster is imported only when one of
them runs, so `jammi search` and `jammi sql` start without it."""

from __future__ import annotations

from jammi import cli as engine_cli


def materialize(project, select, *, device: str = "auto", echo=print, full: bool = False):
    from jammi_assets.runner import run_materialization

    return run_materialization(project, select, device=device, echo=echo, full=full)


def main() -> None:
    engine_cli.main(materialize=materialize)


if __name__ == "__main__":
    main()
