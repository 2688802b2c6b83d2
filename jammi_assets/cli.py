"""The `jammi` console script: the engine's command line (jammi.cli) with the Dagster runner
plugged in for the commands that run the asset graph. Dagster is imported only when one of
them runs, so `jammi search` and `jammi sql` start without it.

SIGINT and SIGTERM end any command at any stage with one line, `error: interrupted by SIG...`,
and exit status 128 + the signal; a run in progress is marked failed and its pool slots freed
first (jammi_assets.runner). `jammi stream` takes both signals itself (it finishes the batch in
hand and exits 0) and reports each batch to the instance (jammi_assets.stream_events)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from jammi_assets import interrupts

if TYPE_CHECKING:
    from jammi.app.stream.batch import BatchResult
    from jammi.spec.project import Project
    from jammi_assets.runner import Outcome


def materialize(project: Project, select: list[str], *, device: str = "auto",
                echo: Callable[[str], None] = print, full: bool = False, partition: str | None = None,
                workers: int = 2) -> Outcome:
    """The engine CLI's `materialize` plug-in: jammi_assets.runner.run_materialization, Dagster
    imported only now."""
    from jammi_assets.runner import run_materialization

    return run_materialization(project, select, device=device, echo=echo, full=full,
                               partition=partition, workers=workers)


def stream_reporter(project: Project, pipeline: str) -> Callable[[BatchResult], None]:
    """The `jammi stream` plug-in: a callback that reports each committed batch of `pipeline` to
    the local Dagster instance as runless materializations (jammi_assets.stream_events)."""
    from jammi_assets.stream_events import batch_reporter

    return batch_reporter(project, pipeline)


def main() -> None:
    """The `jammi` console script: jammi.cli.main with the Dagster plug-ins, SIGINT and SIGTERM
    turned into one error line and exit status 128 + the signal."""
    try:
        interrupts.install()  # before the heavy imports, so a signal while loading is honoured
        from jammi import cli as engine_cli

        engine_cli.main(materialize=materialize, stream_reporter=stream_reporter,
                        own_signals=interrupts.stand_down)
    except interrupts.Interrupted as stop:
        interrupts.report(stop)
    except BaseException as err:
        # a library may catch the signal's exception and raise its own (pydantic building a
        # model while the process imports turns it into a SchemaError): after a signal, any
        # failure is the signal's
        signalled = interrupts.arrived()
        if signalled is None or (isinstance(err, SystemExit) and not err.code):
            raise
        interrupts.report(signalled)


if __name__ == "__main__":
    main()
