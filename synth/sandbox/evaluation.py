"""Verifies candidate programs in a child process, never in the runner's process.

The child (forked by synth/sandbox/zygote.py) receives the code and the inputs only,
never the labels; it returns one mark per row (1, 0 or error) and the parent scores
them. Children come from a zygote: one long-lived interpreter per runner, started on
first use with a scrubbed environment (no API keys), that imports what a child needs
and forks one child per evaluation, so an evaluation costs a fork, not an interpreter
start. Each child runs in its own session and an empty temporary working directory
under rlimits on CPU, address space, file size, processes and core dumps; before the
program runs, it also confines itself with what the kernel offers (Landlock, seccomp,
no capabilities, namespaces) and reports which. The parent enforces the wall clock by
having the child's whole process group killed and reads a bounded number of bytes. See
docs/sandbox.md for what this does and does not protect against.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import math
import os
import selectors
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synth.datasets.generators.base import KINDS
from synth.sandbox.zygote import MAX_ERRORS, MAX_MESSAGE, kill_group, remove_folder

STATUSES = (
    "ok",
    "timeout",
    "memory",
    "crash",
    "exit",
    "output_limit",
    "compile_error",
    "no_function",
    "sandbox_error",
)
# Bytes the parent reads from the child's result channel (the status and a few error
# messages need about 1 KiB); more means the program is writing to our channel.
MAX_OUTPUT_BYTES = 64 * 1024
# Largest file a program may write in its working directory.
MAX_FILE_BYTES = 1 << 20

_CHILD = Path(__file__).with_name("zygote.py")
# The zygote: -I: no environment variables, user site or script directory on sys.path;
# -S: no site import (no .pth files run); -B: no .pyc writes. Then the parent's
# site-packages, so programs may import numpy & co.; never the project.
_SITE = tuple(dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib")))
_COMMAND = (sys.executable, "-I", "-S", "-B", str(_CHILD))
# Built from scratch: nothing of ours (keys!) is inherited. Each child sets HOME and
# TMPDIR to its own working directory.
_ENVIRONMENT = {
    "PATH": os.defpath,
    "LANG": "C.UTF-8",
    # One BLAS thread: no thread pools under RLIMIT_NPROC, less address space.
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
# How long the zygote may take to fork a child.
_ZYGOTE_TIMEOUT = 10.0
# How long past the end of its evaluation a child may take to be reaped once killed (a
# process in uninterruptible sleep ends only when that sleep does): past this the
# evaluation ends anyway and the zygote reaps the child when it can.
REAP_SLACK = 1.0
_CHILD_STATUSES = {"ok", "memory", "exit", "compile_error", "no_function"}
_MARKS = {ord("0"): 0, ord("1"): 1}
_ERROR = ord("E")
_END = b"\x00"


@dataclass
class Evaluation:
    """What one program did on a list of inputs; the parent scores it against labels."""

    status: str  # one of STATUSES
    # The child's marks, one byte per input: b"1", b"0", b"E" (the row raised) or 0 (not
    # reached). Left out of repr(): 10,000 of them are noise in a log.
    marks: bytes = field(repr=False)
    errors: list[str] = field(default_factory=list)  # first distinct messages, bounded
    duration_ms: float = 0.0
    limit: str | None = None  # "wall", "cpu", "memory" or "output" when one stopped it
    # The isolation layers the child applied before the program ran, e.g.
    # "landlock:7 nocaps seccomp"; "" when none could be (rlimits only) or the child
    # died before reporting. See docs/sandbox.md.
    isolation: str = ""

    @property
    def predictions(self) -> list[int | None]:
        """One per input; None = that row raised or was not reached."""
        return list(map(_MARKS.get, self.marks))

    @property
    def n_errors(self) -> int:
        """Rows that raised."""
        return self.marks.count(_ERROR)

    def score(self, labels, start: int = 0) -> tuple[float, int, int]:
        """(accuracy, correct, total) of ``predictions[start:start + len(labels)]``.

        Rows that raised or were never reached count as wrong. ``start`` lets the
        runner score val and test from one evaluation of their concatenated inputs.
        Vectorised over the marks: the runner scores 10,000 rows per evaluation.
        """
        total = len(labels)
        rows = np.frombuffer(self.marks, dtype=np.uint8)[start : start + total]
        if len(rows) != total:
            raise ValueError(f"{total} labels from row {start}, but only {len(self.marks)} predictions")
        correct = int(np.count_nonzero(rows == np.asarray(labels, dtype=np.uint8) + ord("0")))
        return (correct / total if total else 0.0), correct, total


def evaluate(
    code: str,
    func_name: str,
    kind: str,
    inputs: list[str],
    *,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    cpu_seconds: int | None = None,
    max_output_bytes: int = MAX_OUTPUT_BYTES,
    on_start: Callable[[int], None] = lambda pid: None,
) -> Evaluation:
    """Runs ``func_name`` from ``code`` on every input in a sandboxed child process.

    Blocking; from a coroutine use ``evaluate_async``. ``timeout`` is the wall clock of
    the whole evaluation (all inputs); ``cpu_seconds`` defaults to just above it.
    ``on_start`` receives the child's pid (its process group), so a caller in another
    thread can kill it.
    """
    payload = _payload(code, func_name, kind, inputs)
    cpu = cpu_seconds if cpu_seconds is not None else math.ceil(timeout) + 1
    limits = (
        str(math.ceil(timeout) + 2),  # the child's own alarm, a backstop past ours
        str(cpu),
        str(memory_mb << 20),
        str(MAX_FILE_BYTES),
    )
    started = time.perf_counter()
    try:
        # The job reaches the child as a file (no pipe to pump); the marks come back
        # through a file it maps, one byte per row. The child's folder is made by the
        # zygote, in our temporary folder, and removed by it: a runner killed at any
        # moment leaves none behind.
        with tempfile.TemporaryFile() as job, tempfile.TemporaryFile() as marks:
            job.write(payload)
            job.seek(0)
            os.ftruncate(marks.fileno(), max(len(inputs), 1))  # mmap needs a non-empty file
            request = " ".join((*limits, tempfile.gettempdir())).encode("utf-8", "surrogateescape")
            out, returncode, stopped = _run(
                request, job.fileno(), marks.fileno(), timeout, max_output_bytes, on_start
            )
            # Padded: a row the child never marked (or a file it shrank) is "not reached".
            done = os.pread(marks.fileno(), len(inputs), 0).ljust(len(inputs), b"\0")
    except Exception as exc:  # the sandbox itself failed, not the program: never the run
        duration_ms = (time.perf_counter() - started) * 1000
        message = " ".join(f"{type(exc).__name__}: {exc}".split())[:MAX_MESSAGE]
        return Evaluation("sandbox_error", bytes(len(inputs)), [message], duration_ms)
    duration_ms = (time.perf_counter() - started) * 1000
    return _evaluation(done, out, returncode, stopped, duration_ms, timeout)


async def evaluate_async(code: str, func_name: str, kind: str, inputs: list[str], **limits) -> Evaluation:
    """``evaluate`` for the asyncio runner: starting, reading and waiting happen in a
    worker thread, never on the event loop; cancelling kills the child at once."""
    pids: list[int] = []
    run = functools.partial(evaluate, code, func_name, kind, inputs, on_start=pids.append, **limits)
    future = asyncio.get_running_loop().run_in_executor(None, run)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        for pid in pids:
            kill_group(pid)
        await asyncio.wait([future])  # the thread sees EOF and cleans up
        raise


def _payload(code: str, func_name: str, kind: str, inputs: list[str]) -> bytes:
    if kind not in KINDS:
        raise ValueError(f"unknown input kind {kind!r} (known: {', '.join(KINDS)})")
    if not func_name.isidentifier():
        raise ValueError(f"not a function name: {func_name!r}")
    text = "\n".join(inputs)
    if text.count("\n") != max(len(inputs) - 1, 0):
        raise ValueError("inputs must not contain newlines")
    source = code.encode("utf-8", "surrogatepass")
    header = f"{func_name} {kind} {len(inputs)} {len(source)}\n".encode("ascii")
    return header + source + text.encode("utf-8")


class _Zygote:
    """The fork server (zygote.py): one interpreter that forks a child per
    evaluation. In a session of its own, so a Ctrl-C meant for the runner does not reach
    it; it exits when its control socket hits EOF, i.e. when the runner exits or dies
    (not PR_SET_PDEATHSIG: that fires when the thread that started it ends)."""

    def __init__(self):
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self.proc = subprocess.Popen(
                (*_COMMAND, str(theirs.fileno()), *_SITE),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
                env=_ENVIRONMENT,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )

    def fork(self, request: bytes, fds: tuple[int, ...], deadline: float) -> tuple[socket.socket, int, str]:
        """Has the zygote fork a child; returns the request's reply socket, the child's
        pid and its folder. Raises _ZygoteGone when the zygote died or does not answer
        within _ZYGOTE_TIMEOUT, _Late when the evaluation's deadline comes first (a busy
        zygote: it kills the child it forks later, seeing nobody waits for it), OSError
        when the zygote could not make the child's folder."""
        reply, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        wait = min(_ZYGOTE_TIMEOUT, max(deadline - time.monotonic(), 0.001))
        try:
            with theirs:
                fds = (theirs.fileno(), *fds)
                socket.send_fds(self.control, [request], fds, socket.MSG_NOSIGNAL)
            reply.settimeout(wait)
            pid = reply.recv(1 << 16)
        except TimeoutError as exc:
            reply.close()
            raise (_Late if wait < _ZYGOTE_TIMEOUT else _ZygoteGone) from exc
        except OSError as exc:
            reply.close()
            raise _ZygoteGone from exc
        if not pid:
            reply.close()
            raise _ZygoteGone
        if pid.startswith(b"!"):  # it could not make the folder (a full disk, say)
            reply.close()
            raise OSError(pid[1:].decode("utf-8", "replace"))
        pid, folder = pid.decode("utf-8", "surrogateescape").split(" ", 1)
        return reply, int(pid), folder

    def stop(self) -> None:
        self.control.close()  # EOF: it kills the children left and exits
        try:
            self.proc.wait(_ZYGOTE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _ZygoteGone(Exception):
    pass


class _Late(Exception):
    pass


_zygote: _Zygote | None = None
_zygote_lock = threading.Lock()


def _fork(request: bytes, fds: tuple[int, ...], deadline: float) -> tuple[socket.socket, int, str]:
    """A child forked for this request: (reply socket, pid, folder). Starts the zygote on first
    use, and again when it died; a request it never answered started nothing, so it is
    sent once more to the new zygote."""
    global _zygote
    for retry in (False, True):
        with _zygote_lock:
            if _zygote is None:
                _zygote = _Zygote()
            zygote = _zygote
        try:
            return zygote.fork(request, fds, deadline)
        except _ZygoteGone as exc:
            with _zygote_lock:
                if _zygote is zygote:
                    _zygote = None
            zygote.proc.kill()  # in case it hangs rather than died
            zygote.stop()
            if retry:
                raise RuntimeError("the sandbox's zygote died twice in a row") from exc


@atexit.register
def _stop_zygote() -> None:
    global _zygote
    with _zygote_lock:
        zygote, _zygote = _zygote, None
    if zygote is not None:
        zygote.stop()


def _run(request: bytes, job_fd: int, marks_fd: int, timeout: float, cap: int, on_start):
    """Starts the child, reads at most ``cap`` bytes until its end marker, EOF, the
    deadline or the zygote's death, then has its process group killed. Returns (bytes,
    returncode, stopped); returncode is "zygote" when the zygote died meanwhile, "unreaped"
    when the killed child did not end within REAP_SLACK, "oom" when its memory cgroup's
    limit killed it."""
    deadline = time.monotonic() + timeout
    channel, channel_end = os.pipe()
    try:
        try:
            reply, pid, folder = _fork(request, (job_fd, marks_fd, channel_end), deadline)
        except _Late:
            return b"", None, "wall"  # not started: its rows are not reached
        finally:
            os.close(channel_end)
        with reply:
            on_start(pid)
            out, stopped = _read(channel, reply, deadline, cap)
            returncode = _end(reply, pid, stopped)
            if returncode == "zygote":  # nobody else will remove the child's folder now
                remove_folder(folder)
    finally:
        os.close(channel)
    return bytes(out[:cap]), returncode, stopped


def _read(channel: int, reply: socket.socket, deadline: float, cap: int):
    """The result channel until its end marker or EOF; stops early at the deadline
    ("wall"), past ``cap`` bytes ("output") or when the zygote dies ("zygote": the child
    may have undone its parent-death signal, so its EOF may never come)."""
    out = bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(channel, selectors.EVENT_READ)
        selector.register(reply, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            ready = selector.select(remaining) if remaining > 0 else []
            if not ready:
                return out, "wall"
            if any(key.fd == reply.fileno() for key, _ in ready):
                if not reply.recv(16, socket.MSG_PEEK):
                    return out, "zygote"
                # The child ended (its exit code waits): its channel's EOF comes next.
                selector.unregister(reply)
                continue
            chunk = os.read(channel, 1 << 16)
            if not chunk:
                return out, None
            out += chunk
            if len(out) > cap:
                return out, "output"
            if _END in chunk:
                return out, None


def _end(reply: socket.socket, pid: int, stopped: str | None) -> int | str:
    """Asks the zygote to kill the child's process group (nothing happens if it ended:
    the zygote already did) and returns its exit code, waiting at most REAP_SLACK for
    it ("oom": killed at its cgroup's limit); "zygote" when the zygote died, "unreaped"
    when the child was not reaped in time."""
    if stopped == "zygote":
        kill_group(pid)  # nobody else will now
        return "zygote"
    # EOF, not a message: a message the zygote never reads (it reported the child's end
    # and closed its side) would make the kernel discard what it sent us.
    reply.shutdown(socket.SHUT_WR)
    reply.settimeout(REAP_SLACK)
    try:
        code = reply.recv(16)
    except TimeoutError:
        return "unreaped"  # the zygote reaps it when it can
    except OSError:
        code = b""
    if code:
        return "oom" if code == b"oom" else int(code)
    kill_group(pid)
    return "zygote"


def _evaluation(marks: bytes, out: bytes, returncode: int | None, stopped, duration_ms, timeout):
    # The first line is the isolation report, written before the program ran.
    isolation, newline, rest = out.partition(b"\n")
    out = rest if newline else out
    n = len(marks)
    done = f"after {n - marks.count(0)} of {n} rows"
    limit = None
    if stopped == "wall":
        status, limit, errors = "timeout", "wall", [f"wall-clock limit of {timeout:g}s hit {done}"]
    elif stopped == "output":
        status, limit, errors = "output_limit", "output", [f"result channel over its limit {done}"]
    elif out.endswith(_END):
        status, *errors = out[:-1].decode("utf-8", "replace").split("\n")
        if status not in _CHILD_STATUSES or (status == "ok" and 0 in marks) or not _well_formed(errors):
            status, errors = "crash", [f"malformed result channel {done}"]
        elif status == "memory":
            limit = "memory"
    elif returncode == "oom":
        status, limit, errors = "memory", "memory", [f"killed at its memory cgroup's limit {done}"]
    elif returncode == "zygote":
        status, errors = "crash", [f"the sandbox's zygote died {done}"]
    elif returncode == "unreaped":
        status, errors = "crash", [f"the child did not end within {REAP_SLACK:g}s of being killed {done}"]
    elif returncode == -signal.SIGXCPU:
        status, limit, errors = "timeout", "cpu", [f"CPU limit hit {done}"]
    elif returncode == -signal.SIGALRM:
        status, limit, errors = "timeout", "wall", [f"the child's alarm fired {done}"]
    elif returncode < 0:
        status, errors = "crash", [f"killed by {_signal_name(-returncode)} {done}"]
    else:
        status, errors = "exit", [f"exited with status {returncode} {done}"]
    return Evaluation(
        status=status,
        marks=marks,
        errors=errors,
        duration_ms=duration_ms,
        limit=limit,
        isolation=isolation.decode("ascii", "replace") if newline else "",
    )


def _well_formed(errors: list[str]) -> bool:
    """What the child writes: a few messages, each one bounded printable line
    (the last may be the one that ended the evaluation). More is a program writing to
    our channel."""
    return len(errors) <= MAX_ERRORS + 1 and all(len(e) <= MAX_MESSAGE and e.isprintable() for e in errors)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
