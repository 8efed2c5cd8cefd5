"""Verifies candidate programs in a child process, never in the runner's process.

The child (synth/sandbox_child.py) receives the code and the inputs only, never the
labels; it returns one mark per row (1, 0 or error) and the parent scores them. Each
evaluation gets a fresh interpreter in its own session, an empty temporary working
directory, a scrubbed environment (no API keys) and rlimits on CPU, address space,
file size, processes and core dumps; before the program runs, the child also confines
itself with what the kernel offers (Landlock, seccomp, no capabilities, namespaces) and
reports which. The parent enforces the wall clock by killing the whole process group
and reads a bounded number of bytes. See docs/sandbox.md for what this does and does
not protect against.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synth.generators.base import KINDS

STATUSES = (
    "ok", "timeout", "memory", "crash", "exit", "output_limit", "compile_error", "no_function",
)  # fmt: skip
# Bytes the parent reads from the child's result channel (the status and a few error
# messages need about 1 KiB); more means the program is writing to our channel.
MAX_OUTPUT_BYTES = 64 * 1024
# Largest file a program may write in its working directory.
MAX_FILE_BYTES = 1 << 20

_CHILD = Path(__file__).with_name("sandbox_child.py")
# -I: no environment variables, user site or script directory on sys.path; -S: no
# site import (half the startup time); -B: no .pyc writes.
_COMMAND = (sys.executable, "-I", "-S", "-B", str(_CHILD))
# The parent's site-packages, so programs may import numpy & co.; never the project.
_SITE = tuple(dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib")))
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
            raise ValueError(
                f"{total} labels from row {start}, but only {len(self.marks)} predictions"
            )
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
    cwd = tempfile.mkdtemp(prefix="synth-sandbox-")
    started = time.perf_counter()
    try:
        # The job reaches the child as a file on its stdin (no pipe to pump); the marks
        # come back through a file it maps, one byte per row.
        with tempfile.TemporaryFile() as job, tempfile.TemporaryFile() as marks:
            job.write(payload)
            job.seek(0)
            os.ftruncate(marks.fileno(), max(len(inputs), 1))  # mmap needs a non-empty file
            argv = (*_COMMAND, str(marks.fileno()), *limits, *_SITE)
            out, returncode, stopped = _run(
                argv, job, marks.fileno(), cwd, timeout, max_output_bytes, on_start
            )
            # Padded: a row the child never marked (or a file it shrank) is "not reached".
            done = os.pread(marks.fileno(), len(inputs), 0).ljust(len(inputs), b"\0")
    finally:
        _remove(cwd)
    duration_ms = (time.perf_counter() - started) * 1000
    return _evaluation(done, out, returncode, stopped, duration_ms, timeout)


async def evaluate_async(code: str, func_name: str, kind: str, inputs: list[str], **limits) -> Evaluation:
    """``evaluate`` for the asyncio runner: spawning, reading and waiting happen in a
    worker thread, never on the event loop; cancelling kills the child at once."""
    pids: list[int] = []
    run = functools.partial(evaluate, code, func_name, kind, inputs, on_start=pids.append, **limits)
    future = asyncio.get_running_loop().run_in_executor(None, run)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        for pid in pids:
            _kill_group(pid)
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


def _environment(cwd: str) -> dict[str, str]:
    """A minimal environment built from scratch: nothing of ours (keys!) is inherited."""
    return {
        "PATH": os.defpath,
        "LANG": "C.UTF-8",
        "HOME": cwd,
        "TMPDIR": cwd,
        # One BLAS thread: no thread pools under RLIMIT_NPROC, less address space.
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _run(argv, job, marks_fd: int, cwd: str, timeout: float, cap: int, on_start):
    """Starts the child, reads at most ``cap`` bytes until its end marker, EOF or the
    deadline, then kills its process group. Returns (bytes, returncode, stopped)."""
    deadline = time.monotonic() + timeout
    proc = subprocess.Popen(
        argv,
        stdin=job,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=cwd,
        env=_environment(cwd),
        pass_fds=(marks_fd,),
        start_new_session=True,
    )
    on_start(proc.pid)
    out = bytearray()
    stopped = None
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    stopped = "wall"
                    break
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    break
                out += chunk
                if len(out) > cap:
                    stopped = "output"
                    break
                if _END in chunk:
                    break
    finally:
        _kill_group(proc.pid)
        proc.wait()
        proc.stdout.close()
    return bytes(out[:cap]), proc.returncode, stopped


def _kill_group(pgid: int) -> None:
    """SIGKILL everything left in the child's session (its group id is its pid)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _remove(cwd: str) -> None:
    try:
        os.rmdir(cwd)  # the usual case: the program wrote nothing
    except OSError:
        shutil.rmtree(cwd, ignore_errors=True)


def _evaluation(marks: bytes, out: bytes, returncode: int, stopped, duration_ms, timeout):
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
        if status not in _CHILD_STATUSES or (status == "ok" and 0 in marks):
            status, errors = "crash", [f"malformed result channel {done}"]
        elif status == "memory":
            limit = "memory"
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


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
