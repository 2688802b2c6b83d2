"""SIGINT and SIGTERM for the `jammi` command: both raise `Interrupted` wherever the process is,
so `finally` blocks run and the command ends with one line and exit status 128 + the signal.

Inside a Dagster execution Dagster installs its own handler for both signals: it raises inside
a step and only notes the signal elsewhere (jammi_assets.run_guard raises it while a step waits
for a pool slot). Python writes every signal number to a wakeup pipe whatever handler is in
force, and a watchdog thread reads it, so `received()` tells which signal came and the watchdog
can make sure the process ends:

- a signal raised while the interpreter runs a finalizer is swallowed ("Exception ignored in
  ..."): the unraisable hook drops that message and has the watchdog send the signal again at
  once, and until the command has taken the signal the watchdog sends it again every
  `RESEND_EVERY` seconds anyway;
- `GRACE_SECONDS` after the first signal (at once on a second one) the watchdog runs the cleanup
  registered with `on_hard_stop` (the runner's: mark its run failed, free its slots), prints the
  line itself and ends the process with `os._exit`.

Imports nothing heavy: the console script installs this before anything else loads."""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE_SECONDS = 6.0
RESEND_EVERY = 2.0
CLEANUP_SECONDS = 3.0
LOST = 0  # written to the wakeup pipe when a finalizer swallowed the signal's exception


class Interrupted(BaseException):
    """A BaseException, like KeyboardInterrupt, so `except Exception` blocks let it through."""

    def __init__(self, signum: int, detail: str = ""):
        super().__init__(signum, detail)
        self.signum = signum
        self.detail = detail

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        return f"interrupted by {self.name}" + (f": {self.detail}" if self.detail else "")


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[int] = []  # signals not yet taken by received()
        self.echoes: dict[int, int] = {}  # signals the watchdog sent itself, not yet read back
        self.first: int | None = None  # the signal being handled
        self.raised: int | None = None  # the first signal raised in the main thread
        self.taken = False  # the command has taken it (received() or a caught Interrupted)
        self.cleanup: Callable[[], str] | None = None
        self.reported = False  # the command has printed its line
        self.watching = False
        self.wake_fd: int | None = None  # the wakeup pipe's write end


_state = _State()


def _is_interrupt(exc: BaseException | None) -> bool:
    return isinstance(exc, KeyboardInterrupt | Interrupted) or (
        type(exc).__name__ == "DagsterExecutionInterruptedError")


def _raise(signum: int, _frame) -> None:
    _state.raised = _state.raised or signum  # whatever becomes of the exception (arrived())
    if not _state.taken:  # else the command is already ending (a second signal: the watchdog)
        raise Interrupted(signum)


def _record(signum: int, _frame) -> None:
    with _state.lock:
        _state.seen.append(signum)


def install() -> None:
    """Make SIGINT and SIGTERM raise Interrupted and start the watchdog (main thread only;
    elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if not _state.watching:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        try:
            signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except ValueError:
            os.close(r)
            os.close(w)
        else:
            _state.watching, _state.wake_fd = True, w
            _previous_hook = sys.unraisablehook

            def _hook(unraisable) -> None:
                if not _is_interrupt(unraisable.exc_value):
                    _previous_hook(unraisable)
                elif _state.wake_fd is not None:
                    try:
                        os.write(_state.wake_fd, bytes([LOST]))
                    except OSError:
                        pass

            sys.unraisablehook = _hook
            threading.Thread(target=_watch, args=(r, threading.main_thread().ident),
                             name="jammi-interrupts", daemon=True).start()
    for sig in SIGNALS:
        signal.signal(sig, _raise)


def _watch(fd: int, main_ident: int) -> None:
    deadline = resend_at = None
    while True:
        now = time.monotonic()
        timeout = None if deadline is None else max(0.0, min(deadline, resend_at) - now)
        ready, _, _ = select.select([fd], [], [], timeout)
        data = b""
        if ready:
            try:
                data = os.read(fd, 512)
            except (BlockingIOError, InterruptedError):
                pass
        now = time.monotonic()
        for signum in data:
            if signum == LOST and _state.first is not None:
                resend_at = now  # swallowed by a finalizer: send it again now
                continue
            if signum not in SIGNALS:
                continue
            with _state.lock:
                if _state.echoes.get(signum):
                    _state.echoes[signum] -= 1
                    continue
                _state.seen.append(signum)
                if _state.first is None:
                    _state.first = signum
                    deadline, resend_at = now + GRACE_SECONDS, now + RESEND_EVERY
                else:
                    deadline = now  # a second signal: stop now
        if deadline is not None and now >= deadline:
            _hard_stop()
        if resend_at is not None and now >= resend_at:
            resend_at = now + RESEND_EVERY
            with _state.lock:
                if _state.taken:
                    continue
                _state.echoes[_state.first] = _state.echoes.get(_state.first, 0) + 1
            signal.pthread_kill(main_ident, _state.first)


def _hard_stop() -> None:
    """End the process from the watchdog: settle the run (at most CLEANUP_SECONDS: the main
    thread may hold the database), write the line straight to fd 2 (no lock the main thread may
    hold) and exit."""
    signum = _state.first or signal.SIGTERM
    settled: list[str] = []

    def settle() -> None:
        try:
            settled.append(_state.cleanup())
        except BaseException as err:  # the process ends whatever happens here
            settled.append(f"could not settle the run ({err}); the next `jammi materialize` will")

    if _state.cleanup is not None:
        worker = threading.Thread(target=settle, daemon=True)
        worker.start()
        worker.join(CLEANUP_SECONDS)
    stop = Interrupted(signum, settled[0] if settled else "")
    try:
        if not _state.reported:
            os.write(2, f"error: {stop} (stopped without waiting for the step)\n".encode())
    finally:
        os._exit(stop.exit_code)


def report(stop: Interrupted) -> None:
    """Print the command's one line for `stop` and exit with 128 + the signal."""
    taken()
    with deferred():
        _state.reported = True
        print(f"error: {stop}", file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)


def stand_down() -> None:
    """For a command that handles SIGINT and SIGTERM itself (the stream worker finishes its batch
    and exits 0): the watchdog no longer hears signals, so it never ends the process."""
    if threading.current_thread() is threading.main_thread() and _state.watching:
        signal.set_wakeup_fd(-1)
        _state.wake_fd = None


def received() -> int | None:
    """The first SIGINT or SIGTERM that arrived since the last call (None when none did); the
    caller takes it, so the watchdog stops sending it again."""
    with _state.lock:
        first = next((s for s in _state.seen if s in SIGNALS), None)
        _state.seen.clear()
        if first is not None:
            _state.taken = True
    return first


def arrived() -> Interrupted | None:
    """An Interrupted for the SIGINT or SIGTERM that has arrived, if one has (whether or not
    the command has taken it); None when none has."""
    with _state.lock:
        signum = _state.raised or _state.first or next((s for s in _state.seen if s in SIGNALS), None)
    return Interrupted(signum) if signum else None


def taken() -> None:
    """The command has caught the signal and is ending: do not send it again."""
    with _state.lock:
        _state.taken = True


@contextmanager
def on_hard_stop(cleanup: Callable[[], str]) -> Iterator[None]:
    """Within the block, a hard stop runs `cleanup` first and adds what it returns to the line."""
    _state.cleanup = cleanup
    try:
        yield
    finally:
        _state.cleanup = None


@contextmanager
def deferred() -> Iterator[None]:
    """Cleanup that a second Ctrl-C must not cut short: signals are noted, not raised, until the
    block ends (then the handlers in force before are back)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, _record)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
