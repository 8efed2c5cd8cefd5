"""The sandbox child: runs ONE candidate program on the inputs it is sent, then exits.

synth.sandbox starts it as ``python -I -S -B sandbox_child.py ...`` in a fresh session,
an empty working directory and a scrubbed environment. It is deliberately standalone:
stdlib only, nothing imported from this project, so a program cannot reach the
runner's code, keys or database through it.

Protocol.
  argv    the marks descriptor, alarm seconds, CPU seconds, address-space bytes,
          file-size bytes, then directories appended to sys.path (the parent's
          site-packages, so programs may ``import numpy``; .pth files are not run).
  stdin   a header line ``<func_name> <kind> <rows> <code bytes>``, the code (UTF-8),
          then the inputs joined by newlines. Never labels.
  marks   a file of one byte per row, mapped into memory: row i's byte becomes ``1``,
          ``0``, or ``E`` (the row raised) as soon as the row is done, so the parent
          keeps every finished row even when a limit kills us mid-way; 0 = not reached.
  result  the original stdout, moved to a private descriptor before user code runs:
          the status, one line per distinct error message, then a NUL.
"""

import builtins
import mmap
import os
import resource
import sys

import _signal  # not `signal`: that imports enum, ~3 ms of startup per evaluation

MAX_ERRORS = 5
MAX_MESSAGE = 200


def to01(y):
    """The prediction normalisation of TASKS.md (the published protocol).

    A failing ``.item()`` is ignored, as in the published runner. A numeric string is 1
    when its value is non-zero (``"0.5"`` -> 1); the published code truncated it first
    (``int(float(s))``, ``"0.5"`` -> 0), which TASKS.md does not keep.
    """
    try:
        if hasattr(y, "item"):
            y = y.item()
    except Exception:
        pass
    if isinstance(y, bool):
        return 1 if y else 0
    if isinstance(y, int):
        return 1 if y != 0 else 0
    if isinstance(y, str):
        s = y.strip().strip("\"'")
        if s in ("0", "1"):
            return int(s)
        low = s.lower()
        if low in ("true", "false"):
            return 1 if low == "true" else 0
        try:
            return 1 if float(s) != 0 else 0
        except Exception:
            return 1 if s else 0
    return 1 if y else 0


def features(line):
    """A tabular input line ``x0:0.37,x1:c03`` as the dict a program receives."""
    row = {}
    for item in line.split(","):
        key, _, value = item.partition(":")
        try:
            row[key] = float(value)
        except ValueError:
            row[key] = value
    return row


def describe(exc):
    """``Type: message`` on one line, bounded; user exceptions may break ``str``."""
    try:
        text = f"{type(exc).__name__}: {exc}"
    except BaseException:
        text = type(exc).__name__
    return " ".join(text.replace("\x00", " ").split())[:MAX_MESSAGE]


def send(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def run(f, rows, marks):
    """Calls ``f`` on every row, marking each as it is done; returns (status, errors)."""
    errors = []
    for i, x in enumerate(rows):
        try:
            y = f(x)
            t = type(y)
            marks[i] = 49 if (y if t is bool or t is int else to01(y)) else 48
        except MemoryError:
            return "memory", [*errors, "MemoryError: address-space limit"]
        except SystemExit as exc:
            return "exit", [*errors, describe(exc)]
        except BaseException as exc:
            marks[i] = 69
            if len(errors) < MAX_ERRORS:
                message = describe(exc)
                if message not in errors:
                    errors.append(message)
    return "ok", errors


def load(code, func_name):
    """Compiles and executes the program; returns (function, status, errors)."""
    namespace = {"__builtins__": builtins, "__name__": "__candidate__"}
    try:
        exec(compile(code, "<candidate>", "exec"), namespace)
    except MemoryError:
        return None, "memory", ["MemoryError: address-space limit"]
    except SystemExit as exc:
        return None, "exit", [describe(exc)]
    except BaseException as exc:
        return None, "compile_error", [describe(exc)]
    f = namespace.get(func_name)
    if not callable(f):
        return None, "no_function", [f"no function named {func_name!r}"]
    return f, "ok", []


def limit(alarm, cpu, address_space, file_size):
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    # No new processes or threads (root is exempt; the parent kills the group anyway).
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    # Writing past the file-size limit fails with EFBIG (a row error) instead of a kill.
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_IGN)
    # Backstop if the parent dies without killing us: SIGALRM ends the process.
    _signal.alarm(alarm)


def main():
    marks_fd, alarm, cpu, address_space, file_size = map(int, sys.argv[1:6])
    data = sys.stdin.buffer.read()
    # The result channel leaves fd 1; fds 0-2 and sys.std* then lead to /dev/null, so
    # prints and stray writes by the program cannot reach the parent.
    out = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    marks = mmap.mmap(marks_fd, 0)
    os.close(marks_fd)

    end = data.index(b"\n")
    func_name, kind, n_rows, code_size = data[:end].decode("ascii").split(" ")
    start = end + 1 + int(code_size)
    code = data[end + 1 : start].decode("utf-8", "surrogatepass")
    lines = str(memoryview(data)[start:], "utf-8").split("\n") if int(n_rows) else []
    rows = map(features, lines) if kind == "tabular" else lines
    del data

    sys.path.extend(sys.argv[6:])
    limit(alarm, cpu, address_space, file_size)
    f, status, errors = load(code, func_name)
    if f is not None:
        status, errors = run(f, rows, marks)
    send(out, "\n".join([status, *errors]).encode("utf-8", "backslashreplace") + b"\x00")
    os._exit(0)  # no interpreter teardown: no user atexit handlers or finalizers


if __name__ == "__main__":
    main()
