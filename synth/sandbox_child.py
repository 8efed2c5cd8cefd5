"""The sandbox's fork server (the zygote) and the child it forks for each evaluation.

synth.sandbox starts this file once per runner as ``python -I -S -B sandbox_child.py
<control fd> <site dirs>...``, in a session of its own, with a scrubbed environment and
/dev/null as fds 0-2. That process, the zygote, imports what a child needs (ctypes
above all), then serves requests: for each it forks a child that runs ONE candidate
program and exits. The zygote itself never runs a program, never confines itself and
stays single-threaded, so every fork starts from the same clean state. It is
deliberately standalone: stdlib only, nothing imported from this project, so a program
cannot reach the runner's code, keys or database through it.

Protocol (``serve``).
  control a SOCK_SEQPACKET socket; each message is one request, ``<alarm seconds> <CPU
          seconds> <address-space bytes> <file-size bytes> <working directory>``, with
          four descriptors: the request's reply socket, the job, the marks, the result
          channel. EOF: the runner is gone; the zygote kills its children and exits.
  reply   the zygote sends the child's pid, then, once it has ended, its exit code
          (negative: the signal that killed it). EOF from the runner (it shuts down its
          side when done with the child, or closes it) asks the zygote to kill the
          child's process group; the zygote also kills it when the child ends, before
          reaping it, so nothing of the child outlives it.
  job     a file: a header line ``<func_name> <kind> <rows> <code bytes>``, the code
          (UTF-8), then the inputs joined by newlines. Never labels.
  marks   a file of one byte per row, mapped into memory: row i's byte becomes ``1``,
          ``0``, or ``E`` (the row raised) as soon as the row is done, so the parent
          keeps every finished row even when a limit kills us mid-way; 0 = not reached.
  result  a pipe: first the isolation layers applied (one line, written before the
          program runs, so the program cannot change it), then the status, one line
          per distinct error message, then a NUL.

Before the program runs, the child confines itself with what this kernel offers
(``isolate``): rlimits; Landlock (files, TCP, signals, abstract sockets); no
capabilities; a seccomp filter (no new processes, no exec, no metadata changes, no
signals, rlimits or scheduling aimed at other processes, no sockets, no System V IPC),
or, where there is none, network and IPC namespaces of its own.
"""

import builtins
import ctypes
import mmap
import os
import resource
import select
import socket
import stat
import struct
import sys

import signal

MAX_ERRORS = 5
MAX_MESSAGE = 200
# Readable besides the interpreter's sys.path: the shared libraries extension modules
# load, the loader's cache, the time zone and random bytes. Nothing else is.
READABLE = (
    "/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib",
    "/etc/ld.so.cache", "/etc/localtime", "/dev/urandom",
)  # fmt: skip

CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWNET = 0x08000000, 0x10000000, 0x40000000
PR_SET_PDEATHSIG, PR_GET_SECCOMP, PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS = 1, 21, 22, 38
SECCOMP_MODE_FILTER = 2
CAPABILITY_VERSION_3 = 0x20080522
LANDLOCK_CREATE_RULESET, LANDLOCK_ADD_RULE, LANDLOCK_RESTRICT_SELF = 444, 445, 446  # all arches
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV

# seccomp: (audit arch, syscall numbers) per machine; numbers from the kernel's
# arch/x86/entry/syscalls/syscall_64.tbl and include/uapi/asm-generic/unistd.h.
_X86_64 = dict(
    fork=57, vfork=58, clone=56, clone3=435, execve=59, execveat=322, chmod=90, fchmod=91,
    fchmodat=268, fchmodat2=452, chown=92, fchown=93, lchown=94, fchownat=260, ptrace=101,
    process_vm_readv=310, process_vm_writev=311, pidfd_open=434, pidfd_send_signal=424,
    pidfd_getfd=438, kcmp=312, process_madvise=440, perf_event_open=298, io_uring_setup=425,
    bpf=321, userfaultfd=323, unshare=272, setns=308, mount=165, umount2=166, pivot_root=155,
    chroot=161, open_tree=428, move_mount=429, fsopen=430, fsconfig=431, fsmount=432,
    fspick=433, mount_setattr=442, setpriority=141, ioprio_set=251, migrate_pages=256,
    move_pages=279, keyctl=250, add_key=248, request_key=249, kill=62, tkill=200, tgkill=234,
    rt_sigqueueinfo=129, rt_tgsigqueueinfo=297, prlimit64=302, sched_setaffinity=203,
    sched_setscheduler=144, sched_setparam=142, sched_setattr=314, socket=41, utime=132,
    utimes=235, futimesat=261, utimensat=280, setxattr=188, lsetxattr=189, fsetxattr=190,
    removexattr=197, lremovexattr=198, fremovexattr=199, shmget=29, shmat=30, shmctl=31,
    semget=64, semop=65, semctl=66, semtimedop=220, msgget=68, msgsnd=69, msgrcv=70, msgctl=71,
    mq_open=240,
)  # fmt: skip
_AARCH64 = dict(
    clone=220, clone3=435, execve=221, execveat=281, fchmod=52, fchmodat=53, fchmodat2=452,
    fchown=55, fchownat=54, ptrace=117, process_vm_readv=270, process_vm_writev=271,
    pidfd_open=434, pidfd_send_signal=424, pidfd_getfd=438, kcmp=272, process_madvise=440,
    perf_event_open=241, io_uring_setup=425, bpf=280, userfaultfd=282, unshare=97, setns=268,
    mount=40, umount2=39, pivot_root=41, chroot=51, open_tree=428, move_mount=429, fsopen=430,
    fsconfig=431, fsmount=432, fspick=433, mount_setattr=442, setpriority=140, ioprio_set=30,
    migrate_pages=238, move_pages=239, keyctl=219, add_key=217, request_key=218, kill=129,
    tkill=130, tgkill=131, rt_sigqueueinfo=138, rt_tgsigqueueinfo=240, prlimit64=261,
    sched_setaffinity=122, sched_setscheduler=119, sched_setparam=118, sched_setattr=274,
    socket=198, utimensat=88, setxattr=5, lsetxattr=6, fsetxattr=7, removexattr=14,
    lremovexattr=15, fremovexattr=16, shmget=194, shmat=196, shmctl=195, semget=190, semop=193,
    semctl=191, semtimedop=192, msgget=186, msgsnd=189, msgrcv=188, msgctl=187, mq_open=180,
)  # fmt: skip
SYSCALLS = {"x86_64": (0xC000003E, _X86_64), "aarch64": (0xC00000B7, _AARCH64)}
# Refused outright (EPERM): new processes and exec; changes of modes, owners, times and
# extended attributes (Landlock does not cover those); reaching into other processes;
# namespaces and mounts; interfaces that would bypass this filter (io_uring, bpf,
# userfaultfd); keyrings; sockets (socketpair() stays: it reaches nothing outside);
# System V IPC and POSIX message queues (other processes' shared memory and queues).
DENIED = (
    "fork", "vfork", "clone", "clone3", "execve", "execveat",
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
    "utime", "utimes", "futimesat", "utimensat", "setxattr", "lsetxattr", "fsetxattr",
    "removexattr", "lremovexattr", "fremovexattr",
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_send_signal",
    "pidfd_getfd", "kcmp", "process_madvise", "perf_event_open", "setpriority", "ioprio_set",
    "migrate_pages", "move_pages", "unshare", "setns", "mount", "umount2", "pivot_root",
    "chroot", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
    "mount_setattr", "io_uring_setup", "bpf", "userfaultfd", "keyctl", "add_key", "request_key",
    "socket", "shmget", "shmat", "shmctl", "semget", "semop", "semctl", "semtimedop", "msgget",
    "msgsnd", "msgrcv", "msgctl", "mq_open",
)  # fmt: skip
# Allowed only on this process (first argument 0 or our pid): signals, rlimits, scheduling.
SELF_ONLY = (
    "kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "prlimit64",
    "sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr",
)  # fmt: skip


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
    # No new processes or threads (root is exempt: seccomp refuses fork and clone).
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    # Writing past the file-size limit fails with EFBIG (a row error) instead of a kill.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # Backstop if the parent dies without killing us: SIGALRM ends the process.
    signal.alarm(alarm)


def isolate(libc, limits, readable, writable):
    """Confines this process with every layer the kernel offers, before the program
    runs; returns the names of those applied. rlimits always apply; each other layer is
    skipped where unavailable (old kernel, container policy, another architecture)."""
    seccomp_built = libc.prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0
    filtered = SYSCALLS.get(os.uname().machine) if seccomp_built else None
    # The seccomp filter refuses sockets and System V IPC. Where there is none, network
    # and IPC namespaces of our own stand in (they cost throughput: the kernel makes and
    # tears down namespaces one at a time).
    layers = ["namespaces"] if filtered is None and new_namespaces(libc) else []
    limit(*limits)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # needed by Landlock and seccomp
    abi = landlock(libc, readable, writable)
    if abi:
        layers.append(f"landlock:{abi}")
    if drop_capabilities(libc):
        layers.append("nocaps")
    if filtered is not None and seccomp(libc, *filtered):
        layers.append("seccomp")
    return layers


def new_namespaces(libc):
    """Network and IPC namespaces of our own: no interface but a loopback that is down,
    no System V IPC objects or message queues of other processes. Root makes them
    directly; other users inside a user namespace, where that is allowed."""
    if libc.unshare(CLONE_NEWNET | CLONE_NEWIPC) == 0:
        return True
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWIPC) != 0:
        return False
    # Map our own ids into the new user namespace, so that files we create are ours.
    maps = (("uid_map", f"{uid} {uid} 1"), ("setgroups", "deny"), ("gid_map", f"{gid} {gid} 1"))
    for name, text in maps:
        try:
            with open(f"/proc/self/{name}", "w") as file:
                file.write(text)
        except OSError:
            pass
    return True


def landlock(libc, readable, writable):
    """Landlock: read only ``readable``, write only under ``writable``, nothing
    executable; with ABI 4, no TCP; with ABI 6, signals and abstract UNIX sockets only
    within this sandbox. Returns the ABI version applied, 0 for none."""
    abi = libc.syscall(LANDLOCK_CREATE_RULESET, None, 0, 1)  # 1: report the ABI version
    if abi < 1:
        return 0
    handled = (1 << 13) - 1 | FS_REFER * (abi >= 2) | FS_TRUNCATE * (abi >= 3)
    handled |= FS_IOCTL_DEV * (abi >= 5)
    # landlock_ruleset_attr: handled fs rights, handled network rights (ABI 4: TCP bind
    # and connect), scopes (ABI 6: abstract UNIX sockets, signals); as long as the ABI knows.
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    attr = struct.pack("QQQ", handled, 3 * (abi >= 4), 3 * (abi >= 6))[:size]
    ruleset = libc.syscall(LANDLOCK_CREATE_RULESET, attr, len(attr), 0)
    if ruleset < 0:
        return 0
    read = FS_READ_FILE | FS_READ_DIR
    rules = [*((path, read) for path in readable), ("/dev/null", read | FS_WRITE_FILE),
             *((path, handled & ~FS_EXECUTE) for path in writable)]  # fmt: skip
    try:
        for path, access in rules:
            if not path.startswith("/") or path == "/":
                continue
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # absent here
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                access &= FILE_RIGHTS
            rule = struct.pack("=Qi", access & handled, fd)  # landlock_path_beneath_attr
            added = libc.syscall(LANDLOCK_ADD_RULE, ruleset, 1, rule, 0)
            os.close(fd)
            if added != 0:
                return 0
        return abi if libc.syscall(LANDLOCK_RESTRICT_SELF, ruleset, 0) == 0 else 0
    finally:
        os.close(ruleset)


def drop_capabilities(libc):
    """Gives up every capability (when running as root): no mounts, no raising rlimits,
    no overriding file permissions. Returns whether there were any."""
    header = ctypes.create_string_buffer(struct.pack("Ii", CAPABILITY_VERSION_3, 0), 8)
    data = ctypes.create_string_buffer(24)
    if libc.capget(header, data) != 0 or not any(data.raw):
        return False
    return libc.capset(header, ctypes.create_string_buffer(24)) == 0


def seccomp(libc, arch, numbers):
    """A seccomp filter refusing (EPERM) the syscalls in DENIED and those in SELF_ONLY
    aimed at another process; x32 numbers are refused and i386 calls kill the process.
    ``arch`` and ``numbers`` come from SYSCALLS. Returns whether it was installed."""
    load, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JGE|K, RET|K
    # SECCOMP_RET_ERRNO | EPERM, SECCOMP_RET_ALLOW, SECCOMP_RET_KILL_PROCESS
    refuse, allow, kill = 0x00050000 | 1, 0x7FFF0000, 0x80000000
    nr, arch_at, arg0 = 0, 4, 16  # offsets in struct seccomp_data (little-endian: low word)
    program = [(load, 0, 0, arch_at), (jeq, 1, 0, arch), (ret, 0, 0, kill), (load, 0, 0, nr)]
    if arch == SYSCALLS["x86_64"][0]:
        program += [(jge, 0, 1, 0x40000000), (ret, 0, 0, refuse)]  # x32 numbers
    for name in DENIED:
        if name in numbers:
            program += [(jeq, 0, 1, numbers[name]), (ret, 0, 0, refuse)]
    for name in SELF_ONLY:
        # Not this syscall, or aimed at pid 0 or ours: on to the reload of the number.
        program += [(jeq, 0, 4, numbers[name]), (load, 0, 0, arg0), (jeq, 2, 0, 0),
                    (jeq, 1, 0, os.getpid()), (ret, 0, 0, refuse), (load, 0, 0, nr)]  # fmt: skip
    program.append((ret, 0, 0, allow))
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *op) for op in program))
    fprog = ctypes.create_string_buffer(struct.pack("HP", len(program), ctypes.addressof(code)))
    return libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fprog, 0, 0) == 0


def kill_group(pid):
    """SIGKILL the child's session (its group id is its pid), or the child alone when it
    has not made its session yet (it cannot have started a process before that)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def serve(control, libc):
    """The zygote's loop: a child per request on ``control``; its pid, then its exit code,
    on the request's reply socket. Returns at EOF on ``control``."""
    children = {}  # reply fd -> (reply socket, pid), until the child is reaped
    zygote = os.getpid()
    waking, wake = os.pipe()
    os.set_blocking(waking, False)
    os.set_blocking(wake, False)
    signal.set_wakeup_fd(wake)
    signal.signal(signal.SIGCHLD, lambda number, frame: None)  # wakes poll() up
    poller = select.poll()
    poller.register(control, select.POLLIN)
    poller.register(waking, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == control.fileno():
                message, fds, _, _ = socket.recv_fds(control, 1 << 16, 4)
                if not message:  # the runner is gone
                    for _, pid in children.values():
                        kill_group(pid)
                    return
                reply = socket.socket(fileno=fds[0])
                pid = os.fork()
                if pid == 0:
                    try:
                        request = message.decode("utf-8", "surrogateescape")
                        child(request, *fds[1:], libc, zygote)
                    finally:
                        os._exit(1)  # never back into this loop
                for received in fds[1:]:
                    os.close(received)
                children[reply.fileno()] = reply, pid
                poller.register(reply, select.POLLIN)
                try:
                    reply.send(b"%d" % pid)
                except OSError:
                    pass  # the runner gave up on it: poll() reports the hang-up
            elif fd == waking:
                while True:
                    try:
                        os.read(waking, 512)
                    except BlockingIOError:
                        break
                reap(children, poller)
            elif fd in children and asked_to_kill(children[fd][0]):
                poller.unregister(fd)
                kill_group(children[fd][1])


def asked_to_kill(reply):
    """Whether the runner is done with this child (its end of ``reply`` is shut or
    closed), not an event left over from a reply socket that this round of ``poll()``
    closed and whose number a new one took."""
    try:
        reply.recv(16, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        pass
    return True


def reap(children, poller):
    """Kills the group of every child that ended, then reaps it and reports its exit code."""
    pids = {pid: fd for fd, (_, pid) in children.items()}
    while True:
        try:
            ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if ended is None:
            return
        # Not yet reaped, the child still holds its group id: no other group can be hit.
        kill_group(ended.si_pid)
        _, status = os.waitpid(ended.si_pid, 0)
        reply, _ = children.pop(pids[ended.si_pid])
        try:
            poller.unregister(reply)
        except KeyError:
            pass  # already asked to kill
        try:
            reply.send(b"%d" % os.waitstatus_to_exitcode(status))
        except OSError:
            pass
        reply.close()


def child(request, job_fd, marks_fd, out, libc, zygote):
    """In the forked child: becomes what a freshly started child would be (its own
    session, its working directory, no descriptor of the zygote's), then confines itself
    and runs the program."""
    os.setsid()
    # Dies with the zygote: the runner then learns nothing of our end, so none must come.
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != zygote:  # it died before the line above
        os._exit(1)
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    *limits, cwd = request.split(" ", 4)
    os.chdir(cwd)
    os.environ["HOME"] = os.environ["TMPDIR"] = cwd
    with open(job_fd, "rb") as job:
        data = job.read()
    # Only the result channel and the marks stay open: not the zygote's control socket,
    # nor the reply sockets of other evaluations. Fds 0-2 are the zygote's /dev/null.
    low = 3
    for fd in sorted((marks_fd, out)):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))
    marks = mmap.mmap(marks_fd, 0)
    os.close(marks_fd)

    end = data.index(b"\n")
    func_name, kind, n_rows, code_size = data[:end].decode("ascii").split(" ")
    start = end + 1 + int(code_size)
    code = data[end + 1 : start].decode("utf-8", "surrogatepass")
    lines = str(memoryview(data)[start:], "utf-8").split("\n") if int(n_rows) else []
    rows = map(features, lines) if kind == "tabular" else lines
    del data

    layers = isolate(libc, tuple(map(int, limits)), [*sys.path, *READABLE], [cwd])
    send(out, " ".join(layers).encode("ascii") + b"\n")
    f, status, errors = load(code, func_name)
    if f is not None:
        status, errors = run(f, rows, marks)
    send(out, "\n".join([status, *errors]).encode("utf-8", "backslashreplace") + b"\x00")
    os._exit(0)  # no interpreter teardown: no user atexit handlers or finalizers


def main():
    control = socket.socket(fileno=int(sys.argv[1]))
    sys.path.extend(sys.argv[2:])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    serve(control, libc)


if __name__ == "__main__":
    main()
