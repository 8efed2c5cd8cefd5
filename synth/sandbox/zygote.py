"""The sandbox's fork server (the zygote) and the child it forks for each evaluation.

synth.sandbox.evaluation starts this file once per runner as ``python -I -S -B zygote.py
<control fd> <site dirs>...``, in a session of its own, with a scrubbed environment and
/dev/null as fds 0-2. That process, the zygote, imports what a child needs (ctypes
above all), then serves requests: for each it forks a child that runs ONE candidate
program and exits. The zygote itself never runs a program, never confines itself and
stays single-threaded, so every fork starts from the same clean state. It is
deliberately standalone: stdlib only, nothing imported from this project, so a program
cannot reach the runner's code, keys or database through it.

Protocol (``serve``).
  control a SOCK_SEQPACKET socket; each message is one request, ``<alarm seconds> <CPU
          seconds> <address-space bytes> <file-size bytes> <temporary folder>``, with
          four descriptors: the request's reply socket, the job, the marks, the result
          channel. The zygote makes the child's working directory in that folder, and
          removes it once the child is reaped. EOF: the runner is gone; the zygote
          kills its children, removes their folders and exits.
  reply   the zygote sends the child's pid and its folder (``!<error>`` when the folder
          could not be made), then, once it has ended, its exit code (negative: the
          signal that killed it; ``oom``: its memory cgroup's limit killed it). EOF from the runner (it shuts down its
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
import functools
import mmap
import os
import resource
import select
import signal
import socket
import stat
import struct
import sys
import tempfile

MAX_ERRORS = 5
MAX_MESSAGE = 200
# What a program may hold beyond its address space (RLIMIT_AS does not count these):
# open descriptors (pipes and their buffers), and, on the private tmpfs that is its
# working directory, bytes and files (a directory is a file too).
MAX_OPEN_FILES = 64
MAX_DIR_BYTES = 32 << 20
MAX_DIR_FILES = 1000
# Its memory cgroup's limit, past the address space: the tmpfs, a pipe buffer of at most
# 1 MiB (pipe-max-size) per descriptor, and a margin for the kernel's own bookkeeping.
MEMCG_SLACK = MAX_DIR_BYTES + (MAX_OPEN_FILES << 20) + (32 << 20)
# Signals it may queue: the per-user limit is shared with nothing when it runs as its own
# user, and is small anyway.
MAX_PENDING_SIGNALS = 64
# As root, the child runs as this user id plus its pid: an identity that owns no file and
# no other process, and shares no per-user limit with the runner or another evaluation.
UID_BASE = 2_000_000_000
NOBODY = 65534  # where that range is not mapped (a user namespace)
# Readable besides the interpreter's sys.path: the shared libraries extension modules
# load, the loader's cache, the time zone and random bytes. Nothing else is.
READABLE = (
    "/usr/lib",
    "/usr/lib64",
    "/lib",
    "/lib64",
    "/usr/local/lib",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/dev/urandom",
)

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWNET = 0x20000, 0x08000000, 0x10000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 1 << 14, 1 << 18
PR_SET_PDEATHSIG, PR_SET_KEEPCAPS, PR_GET_SECCOMP, PR_SET_SECCOMP = 1, 8, 21, 22
PR_SET_NO_NEW_PRIVS = 38
CAP_DAC_READ_SEARCH = 2
SECCOMP_MODE_FILTER = 2
CAPABILITY_VERSION_3 = 0x20080522
LANDLOCK_CREATE_RULESET, LANDLOCK_ADD_RULE, LANDLOCK_RESTRICT_SELF = 444, 445, 446  # all arches
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV

# seccomp: (audit arch, syscall numbers) per machine; numbers from the kernel's
# arch/x86/entry/syscalls/syscall_64.tbl and include/uapi/asm-generic/unistd.h.
# name: (x86_64 number, aarch64 number); None where the architecture has no such call
# (aarch64 has only the *at forms). From 403 up the numbers are one table for all.
_NUMBERS = {
    "fork": (57, None),
    "vfork": (58, None),
    "clone": (56, 220),
    "execve": (59, 221),
    "execveat": (322, 281),
    "chmod": (90, None),
    "fchmod": (91, 52),
    "fchmodat": (268, 53),
    "chown": (92, None),
    "fchown": (93, 55),
    "lchown": (94, None),
    "fchownat": (260, 54),
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "kcmp": (312, 272),
    "perf_event_open": (298, 241),
    "bpf": (321, 280),
    "userfaultfd": (323, 282),
    "unshare": (272, 97),
    "setns": (308, 268),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "setpriority": (141, 140),
    "ioprio_set": (251, 30),
    "migrate_pages": (256, 238),
    "move_pages": (279, 239),
    "keyctl": (250, 219),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "kill": (62, 129),
    "tkill": (200, 130),
    "tgkill": (234, 131),
    "rt_sigqueueinfo": (129, 138),
    "rt_tgsigqueueinfo": (297, 240),
    "prlimit64": (302, 261),
    "sched_setaffinity": (203, 122),
    "sched_setscheduler": (144, 119),
    "sched_setparam": (142, 118),
    "sched_setattr": (314, 274),
    "socket": (41, 198),
    "utime": (132, None),
    "utimes": (235, None),
    "futimesat": (261, None),
    "utimensat": (280, 88),
    "setxattr": (188, 5),
    "lsetxattr": (189, 6),
    "fsetxattr": (190, 7),
    "removexattr": (197, 14),
    "lremovexattr": (198, 15),
    "fremovexattr": (199, 16),
    "shmget": (29, 194),
    "shmat": (30, 196),
    "shmctl": (31, 195),
    "semget": (64, 190),
    "semop": (65, 193),
    "semctl": (66, 191),
    "semtimedop": (220, 192),
    "msgget": (68, 186),
    "msgsnd": (69, 189),
    "msgrcv": (70, 188),
    "msgctl": (71, 187),
    "mq_open": (240, 180),
    "socketpair": (53, 199),
    "memfd_create": (319, 279),
    "inotify_init": (253, None),
    "inotify_init1": (294, 26),
    "fanotify_init": (300, 262),
    "sync": (162, 81),
    "syncfs": (306, 267),
    "flock": (73, 32),
    "fcntl": (72, 25),
    "ioctl": (16, 29),
    "name_to_handle_at": (303, 264),
    "open_by_handle_at": (304, 265),
    "clone3": (435, 435),
    "fchmodat2": (452, 452),
    "pidfd_open": (434, 434),
    "pidfd_send_signal": (424, 424),
    "pidfd_getfd": (438, 438),
    "process_madvise": (440, 440),
    "io_uring_setup": (425, 425),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
    "memfd_secret": (447, 447),
    "setxattrat": (463, 463),
    "removexattrat": (466, 466),
    "open_tree_attr": (467, 467),
    "file_setattr": (469, 469),
}
SYSCALLS = {
    machine: (arch, {name: numbers[column] for name, numbers in _NUMBERS.items() if numbers[column]})
    for column, (machine, arch) in enumerate((("x86_64", 0xC000003E), ("aarch64", 0xC00000B7)))
}
# Refused outright (EPERM): new processes and exec; changes of modes, owners, times and
# extended attributes (Landlock does not cover those); reaching into other processes;
# namespaces and mounts; interfaces that would bypass this filter (io_uring, bpf,
# userfaultfd); keyrings; sockets, socketpair() included (an unnamed UNIX socket can
# still sendmsg() to a named one, and its buffers are memory no rlimit counts); System V
# IPC and POSIX message queues (other processes' shared memory and queues); memfd (memory
# no rlimit counts); inotify and fanotify (they reveal other folders' file names, and
# their instances are a per-user limit the runner shares); sync() and syncfs() (they
# wait on every file system's writes, past our deadline); file locks (a lock on a file it
# may only read would block its writers); file handles (opening by handle passes no path).
DENIED = (
    "fork",
    "vfork",
    "clone",
    "clone3",
    "execve",
    "execveat",
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "fchown",
    "lchown",
    "fchownat",
    "utime",
    "utimes",
    "futimesat",
    "utimensat",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_open",
    "pidfd_send_signal",
    "pidfd_getfd",
    "kcmp",
    "process_madvise",
    "perf_event_open",
    "setpriority",
    "ioprio_set",
    "migrate_pages",
    "move_pages",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "io_uring_setup",
    "bpf",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "socket",
    "shmget",
    "shmat",
    "shmctl",
    "semget",
    "semop",
    "semctl",
    "semtimedop",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "mq_open",
    "socketpair",
    "memfd_create",
    "memfd_secret",
    "inotify_init",
    "inotify_init1",
    "fanotify_init",
    "sync",
    "syncfs",
    "flock",
    "name_to_handle_at",
    "open_by_handle_at",
    "setxattrat",
    "removexattrat",
    "open_tree_attr",
    "file_setattr",
)
# fcntl and ioctl are allowed only with these commands (their second argument): what
# Python and its libraries use on their own descriptors. Refused with them: the commands
# that make the kernel signal another process (F_SETOWN & co., FIOSETOWN), watch a folder
# (F_NOTIFY), hold a lease or a lock on a file others write, change a file's inode flags
# or version (FS_IOC_SETFLAGS...: append-only, no-dump, sync), push input into a
# terminal (TIOCSTI), and every device's or file system's own.
COMMANDS = {
    "fcntl": (
        0,
        1,
        2,
        3,
        4,
        1030,  # F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_DUPFD_CLOEXEC
        5,
        36,
        9,
        11,
        16,
        1025,  # F_GETLK, F_OFD_GETLK, F_GETOWN, F_GETSIG, F_GETOWN_EX, F_GETLEASE
        1031,
        1032,
        1034,  # F_SETPIPE_SZ, F_GETPIPE_SZ, F_GET_SEALS
    ),
    "ioctl": (
        0x5401,
        0x5413,  # TCGETS, TIOCGWINSZ (isatty, terminal size)
        0x541B,
        0x5421,
        0x5450,
        0x5451,  # FIONREAD, FIONBIO, FIONCLEX, FIOCLEX
    ),
}
# The highest system call number these tables know (Linux 6.18: file_setattr). A higher
# one is a call added since: unknown, so refused, as ENOSYS ("not implemented"), which is
# what a library that tries a new call before an older one expects from an older kernel.
KNOWN_UP_TO = 469
# Allowed only on this process (first argument 0 or our pid): signals, rlimits, scheduling.
SELF_ONLY = (
    "kill",
    "tkill",
    "tgkill",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "prlimit64",
    "sched_setaffinity",
    "sched_setscheduler",
    "sched_setparam",
    "sched_setattr",
)


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
    """A tabular input line ``x0:0.37,x1:c03`` as the dict a program receives (a new one
    each row: the program may change it)."""
    return dict(map(_feature, line.split(",")))


@functools.lru_cache(maxsize=1 << 16)
def _feature(item):
    """``x3:0.37`` as ("x3", 0.37). Memoised: a table's columns repeat few distinct
    values, and a failed float() (a category) costs an exception each time."""
    key, _, value = item.partition(":")
    try:
        return key, float(value)
    except ValueError:
        return key, value


# Bound now: a program may replace builtins (type, str, ...) and a class's __name__.
_type = type
_class_name = type.__dict__["__name__"].__get__  # a class's own name, past its metaclass
_plain = str.__str__  # an exact str, from a str subclass too
_printable = str.isprintable


def describe(exc):
    """``Type: message`` on one line of printable characters, bounded. A program's
    exception may break ``str``, and its class may break ``__name__``: never raises."""
    try:
        name = _plain(_class_name(_type(exc)))
    except BaseException:
        name = "Exception"
    try:
        text = _plain(f"{name}: {exc}")
    except BaseException:
        text = name
    text = "".join(c if _printable(c) else " " for c in text[: MAX_MESSAGE * 4])
    return " ".join(text.split())[:MAX_MESSAGE]


def send(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_len, _enumerate = len, enumerate  # bound now, like describe's helpers


def run(f, rows, marks):
    """Calls ``f`` on every row, marking each as it is done; returns (status, errors)."""
    errors = []
    for i, x in _enumerate(rows):
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
            if _len(errors) < MAX_ERRORS:
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
    bounds = {
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_CPU: cpu,
        resource.RLIMIT_AS: address_space,
        resource.RLIMIT_FSIZE: file_size,
        # No new processes or threads (root is exempt: seccomp refuses fork and clone).
        resource.RLIMIT_NPROC: 0,
        # Descriptors bound what the kernel holds for us outside the address space
        # (pipe buffers above all); no locked memory, no message queues.
        resource.RLIMIT_NOFILE: MAX_OPEN_FILES,
        resource.RLIMIT_MEMLOCK: 0,
        resource.RLIMIT_MSGQUEUE: 0,
        resource.RLIMIT_SIGPENDING: MAX_PENDING_SIGNALS,
    }
    for which, soft in bounds.items():
        _, hard = resource.getrlimit(which)
        soft = soft if hard == resource.RLIM_INFINITY else min(soft, hard)
        # The CPU limit's hard bound is a second later: SIGXCPU first, then SIGKILL.
        hard = soft + 1 if which == resource.RLIMIT_CPU else soft
        resource.setrlimit(which, (soft, hard))
    # Writing past the file-size limit fails with EFBIG (a row error) instead of a kill.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # Backstop if the parent dies without killing us: SIGALRM ends the process.
    signal.alarm(alarm)


def isolate(libc, limits, readable, cwd, zygote, in_memory_cgroup):
    """Confines this process with every layer the kernel offers, before the program
    runs; returns the names of those applied. rlimits always apply; each other layer is
    skipped where unavailable (old kernel, not root, container policy, another
    architecture)."""
    seccomp_built = libc.prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0
    filtered = SYSCALLS.get(os.uname().machine) if seccomp_built else None
    # The seccomp filter refuses sockets and System V IPC. Where there is none, network
    # and IPC namespaces of our own stand in (they cost throughput: the kernel makes and
    # tears down namespaces one at a time).
    layers = ["namespaces"] if filtered is None and new_namespaces(libc) else []
    root = os.geteuid() == 0
    uid = identity(os.getpid()) if root else None
    if root and private_directory(libc, cwd, 0 if uid is None else uid):
        layers.append("tmpfs")
    if in_memory_cgroup and oom_victim():
        layers.append("memcg")
    limit(*limits)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # needed by Landlock and seccomp
    abi = landlock(libc, readable, [cwd])
    if abi:
        layers.append(f"landlock:{abi}")
    if uid is not None and drop_identity(libc, uid, cwd, zygote):
        # nobody's is shared by every evaluation, and so are its per-user limits
        layers.append("setuid" if uid != NOBODY else "nobody")
    elif drop_capabilities(libc):
        layers.append("nocaps")
    if filtered is not None and seccomp(libc, *filtered):
        layers.append("seccomp")
    return layers


def oom_victim():
    """Makes this process the one the kernel kills when the memory cgroup it shares with
    the zygote is full (and undoes the zygote's exemption, which we inherited)."""
    try:
        write("/proc/self/oom_score_adj", 1000)
    except OSError:
        return False
    return True


def private_directory(libc, cwd, uid):
    """Makes the working directory a tmpfs of our own, in a mount namespace of our own:
    what the program writes is bounded in bytes and in files (so in depth too), and the
    kernel frees all of it when we end, so the runner has nothing to clean up however
    much was made. Root only (the mount needs the capability). Returns whether it is."""
    if libc.unshare(CLONE_NEWNS) != 0:
        return False
    # Nothing we mount may propagate back into the runner's namespace.
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return False
    options = f"size={MAX_DIR_BYTES},nr_inodes={MAX_DIR_FILES},mode=700,uid={uid},gid={uid}"
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    if libc.mount(b"synth-sandbox", os.fsencode(cwd), b"tmpfs", flags, options.encode()) != 0:
        return False
    os.chdir(cwd)  # into the new mount: the old cwd is the folder beneath it
    return True


def identity(pid):
    """The user id a child becomes as root: UID_BASE + its pid, or nobody's where that
    is not mapped (root in a user namespace that maps a range); None where neither is."""
    try:
        with open("/proc/self/uid_map") as lines:
            ranges = [tuple(map(int, line.split())) for line in lines]
    except (OSError, ValueError):
        return None
    for uid in (UID_BASE + pid, NOBODY):
        if any(inside <= uid < inside + count for inside, _, count in ranges):
            return uid
    return None


def drop_identity(libc, uid, cwd, zygote):
    """Root becomes ``uid`` (``identity``), a user of its own (no groups): it owns no
    file outside its folder and no other process, so ownership grants it nothing (inode
    flags, leases, signals), and per-user limits are its own. Of root's capabilities it keeps
    one, to read and search past file permissions (the interpreter may live in a folder
    only root may enter, such as /root/.pyenv); what it may read is still only what
    Landlock allows. Returns whether it was done."""
    try:
        os.setgroups([])
    except OSError:
        pass  # refused where a user namespace denies setgroups: root's group stays
    libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
    try:
        os.chown(cwd, uid, uid)
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    except OSError:
        libc.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0)
        return False
    keep = 1 << CAP_DAC_READ_SEARCH  # effective, permitted, inheritable (x 2 words)
    header = ctypes.create_string_buffer(struct.pack("Ii", CAPABILITY_VERSION_3, 0), 8)
    libc.capset(header, ctypes.create_string_buffer(struct.pack("6I", keep, keep, 0, 0, 0, 0), 24))
    libc.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0)
    # A change of identity clears the parent-death signal: ask for it again.
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != zygote:
        os._exit(1)
    return True


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
    rules = [
        *((path, read) for path in readable),
        ("/dev/null", read | FS_WRITE_FILE),
        *((path, handled & ~FS_EXECUTE) for path in writable),
    ]
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
    """A seccomp filter refusing (EPERM) the syscalls in DENIED, fcntl and ioctl with a
    command not in COMMANDS, and the syscalls in SELF_ONLY aimed at another process;
    calls newer than KNOWN_UP_TO get ENOSYS; x32 numbers are refused and i386 calls kill
    the process.
    ``arch`` and ``numbers`` come from SYSCALLS. Returns whether it was installed."""
    load, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JGE|K, RET|K
    # SECCOMP_RET_ERRNO | EPERM, SECCOMP_RET_ALLOW, SECCOMP_RET_KILL_PROCESS
    refuse, allow, kill = 0x00050000 | 1, 0x7FFF0000, 0x80000000
    unknown = 0x00050000 | 38  # SECCOMP_RET_ERRNO | ENOSYS
    nr, arch_at, arg0, arg1 = 0, 4, 16, 24  # in struct seccomp_data (little-endian: low word)
    program = [(load, 0, 0, arch_at), (jeq, 1, 0, arch), (ret, 0, 0, kill), (load, 0, 0, nr)]
    if arch == SYSCALLS["x86_64"][0]:
        program += [(jge, 0, 1, 0x40000000), (ret, 0, 0, refuse)]  # x32 numbers
    program += [(jge, 0, 1, KNOWN_UP_TO + 1), (ret, 0, 0, unknown)]
    for name in DENIED:
        if name in numbers:
            program += [(jeq, 0, 1, numbers[name]), (ret, 0, 0, refuse)]
    for name, commands in COMMANDS.items():
        # Not this syscall: past the block. Else a listed command jumps to the reload of
        # the number for the checks below; any other is refused.
        m = len(commands)
        program += [(jeq, 0, m + 3, numbers[name]), (load, 0, 0, arg1)]
        program += [(jeq, m - j, 0, command) for j, command in enumerate(commands)]
        program += [(ret, 0, 0, refuse), (load, 0, 0, nr)]
    for name in SELF_ONLY:
        # Not this syscall, or aimed at pid 0 or ours: on to the reload of the number.
        program += [
            (jeq, 0, 4, numbers[name]),
            (load, 0, 0, arg0),
            (jeq, 2, 0, 0),
            (jeq, 1, 0, os.getpid()),
            (ret, 0, 0, refuse),
            (load, 0, 0, nr),
        ]
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
    # reply fd -> (reply socket, pid, folder, memory cgroup, its OOM kills before), until
    # the child is reaped
    children = {}
    cgroup = MemoryCgroup()
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
                if not message:  # the runner is gone: so go its children and their folders
                    for _, pid, *_ in children.values():
                        kill_group(pid)
                    for _, pid, folder, _, _ in children.values():
                        os.waitpid(pid, 0)
                        clean(folder, cgroup)
                    cgroup.remove()
                    return
                reply = socket.socket(fileno=fds[0])
                alarm, cpu, address_space, file_size, root = message.decode("utf-8", "surrogateescape").split(
                    " ", 4
                )
                try:  # made here, so that it is ours to remove from its first moment
                    folder = tempfile.mkdtemp(prefix="synth-sandbox-", dir=root)
                except OSError as e:
                    for received in fds[1:]:
                        os.close(received)
                    with reply:
                        try:
                            reply.send(b"!" + describe(e).encode("utf-8", "backslashreplace"))
                        except OSError:
                            pass
                    continue
                request = " ".join((alarm, cpu, address_space, file_size, folder))
                budget = int(address_space) + MEMCG_SLACK
                cgroup.grow(budget)
                pid = os.fork()
                if pid == 0:
                    try:
                        child(request, *fds[1:], libc, zygote, cgroup.folder is not None)
                    finally:
                        os._exit(1)  # never back into this loop
                for received in fds[1:]:
                    os.close(received)
                children[reply.fileno()] = reply, pid, folder, budget, cgroup.ooms()
                poller.register(reply, select.POLLIN)
                try:
                    reply.send(b"%d " % pid + folder.encode("utf-8", "surrogateescape"))
                except OSError:
                    pass  # the runner gave up on it: poll() reports the hang-up
            elif fd == waking:
                while True:
                    try:
                        os.read(waking, 512)
                    except BlockingIOError:
                        break
                reap(children, poller, cgroup)
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


def reap(children, poller, cgroup):
    """Kills the group of every child that ended, then reaps it, removes its folder and
    reports its exit code ("oom" when its memory cgroup killed it). Reaps the cleaners
    (``clean``) too."""
    pids = {fields[1]: fd for fd, fields in children.items()}
    while True:
        try:
            ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if ended is None:
            return
        if ended.si_pid not in pids:  # a cleaner
            os.waitpid(ended.si_pid, 0)
            continue
        # Not yet reaped, the child still holds its group id: no other group can be hit.
        kill_group(ended.si_pid)
        _, status = os.waitpid(ended.si_pid, 0)
        reply, _, folder, budget, ooms = children.pop(pids.pop(ended.si_pid))
        clean(folder, cgroup)
        # Killed by the kernel while the cgroup's OOM kills went up: the memory limit.
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        killed = killed and cgroup.ooms() > ooms
        cgroup.grow(-budget)
        try:
            poller.unregister(reply)
        except KeyError:
            pass  # already asked to kill
        try:
            reply.send(b"oom" if killed else b"%d" % os.waitstatus_to_exitcode(status))
        except OSError:
            pass
        reply.close()


class MemoryCgroup:
    """A memory cgroup for the zygote and its children, where the machine lets us make
    one (cgroup v1's memory controller, or v2 where memory is delegated to our cgroup).
    Its limit is the most the children alive at once have needed (address space plus
    MEMCG_SLACK each) plus the zygote's own; it only grows (lowering it makes the kernel
    reclaim memory there and then, which would stall the zygote's loop). It counts what
    the address-space limits do not (tmpfs pages, pipe buffers, kernel memory), so the
    sandbox's share of the machine is bounded. The children are born in it (a fork costs
    nothing; moving each child into a cgroup of its own would wait ~8 ms for the kernel's
    RCU grace period). Each child is the OOM killer's first victim (the zygote is exempt
    where it may be, with CAP_SYS_RESOURCE). Removed when the zygote exits; a dead
    zygote's is removed by the next one."""

    PREFIX = "synth-sandbox-"
    ZYGOTE = 64 << 20  # the zygote's own allowance

    def __init__(self):
        self.folder, self.files = None, ()
        self.in_flight = self.limited = self.ZYGOTE
        parent, files = memory_cgroup()
        if parent is None:
            return
        for name in os.listdir(parent):  # left by zygotes that were killed
            owner = name[len(self.PREFIX) :]
            if name.startswith(self.PREFIX) and owner.isdigit() and not alive(int(owner)):
                try:
                    os.rmdir(os.path.join(parent, name))
                except OSError:
                    pass
        folder = os.path.join(parent, f"{self.PREFIX}{os.getpid()}")
        try:
            os.mkdir(folder)
            self.folder, self.files, self.parent = folder, files, parent
            self.limit()
            write(os.path.join(folder, "cgroup.procs"), os.getpid())
        except OSError:
            self.remove()
            self.folder = None
            return
        try:  # exempt, where we may (CAP_SYS_RESOURCE); each child is the victim anyway
            write("/proc/self/oom_score_adj", -1000)
        except OSError:
            pass

    def grow(self, by):
        """A child of that budget comes (``by`` > 0) or went (``by`` < 0)."""
        self.in_flight += by
        if self.folder is not None and self.in_flight > self.limited:
            try:
                self.limit(self.in_flight)
            except OSError:
                pass  # the limit stays where it was

    def limit(self, value=None):
        value = self.limited if value is None else value
        # v1 keeps memory <= memory+swap at every step: memory+swap first to grow, memory
        # first to shrink (from the unlimited a new cgroup starts with).
        try:
            for name in reversed(self.files):
                write(os.path.join(self.folder, name), value)
        except OSError:
            for name in self.files:
                write(os.path.join(self.folder, name), value)
        self.limited = value

    def ooms(self):
        """How many processes the cgroup's limit has killed so far."""
        if self.folder is None:
            return 0
        for name in ("memory.events", "memory.oom_control"):  # v2, v1
            try:
                with open(os.path.join(self.folder, name)) as counters:
                    for line in counters:
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            return int(value)
            except OSError:
                continue
        return 0

    def leave(self):
        """Moves this process (the zygote, or a cleaner) back where the zygote was."""
        if self.folder is not None:
            try:
                write(os.path.join(self.parent, "cgroup.procs"), os.getpid())
            except OSError:
                pass

    def remove(self):
        """Moves the zygote back where it was and removes the cgroup."""
        self.leave()
        if self.folder is not None:
            try:
                os.rmdir(self.folder)
            except OSError:
                pass


def memory_cgroup():
    """(our memory cgroup's folder, the names of its limit files), or (None, ())."""
    try:
        with open("/proc/self/cgroup") as lines:
            entries = [line.rstrip("\n").split(":", 2) for line in lines]
    except OSError:
        return None, ()
    for _, controllers, path in entries:
        if "memory" in controllers.split(","):  # v1
            folder = "/sys/fs/cgroup/memory" + path
            files = ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
            break
    else:
        path = next((path for number, _, path in entries if number == "0"), None)
        folder = f"/sys/fs/cgroup{path}"
        files = ("memory.max", "memory.swap.max")
        try:
            with open(os.path.join(folder, "cgroup.subtree_control")) as control:
                if path is None or "memory" not in control.read().split():
                    return None, ()
        except OSError:
            return None, ()
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        return None, ()
    files = tuple(name for name in files if name == files[0] or os.path.exists(f"{folder}/{name}"))
    return folder, files


def write(path, value):
    with open(path, "w") as file:
        file.write(str(value))


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def clean(folder, cgroup=None):
    """Removes a reaped child's folder: empty when it was a private tmpfs (the kernel freed
    that with the child), so one rmdir; otherwise a cleaner process removes what the
    program left, off every evaluation's path, and finishes even if the runner is gone
    (outside the zygote's memory cgroup, which it would otherwise keep from removal)."""
    try:
        os.rmdir(folder)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    if os.fork() == 0:
        try:
            # None of the zygote's sockets: the runner must see them close with the zygote.
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))
            if cgroup is not None:
                cgroup.leave()
            remove_folder(folder)
        finally:
            os._exit(0)


def remove_folder(folder):
    """Removes a child's folder and all it holds, as far as it can; never raises (what
    cannot be removed is no evaluation's failure)."""
    try:
        remove_tree(folder)
    except OSError:
        pass


def remove_tree(root):
    """Removes ``root`` and everything below it without recursion and without long
    paths: one directory descriptor at a time, going down by name and up by "..", so a
    chain of any depth is removed (shutil.rmtree recurses once per level). Folders a
    program made unreadable are opened up first. Symbolic links are removed, never
    followed."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    fd = os.open(root, flags)
    below = []  # the names from root down to fd
    try:
        while True:
            sub = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        sub = entry.name
                        break
                    os.unlink(entry.name, dir_fd=fd)
            if sub is not None:
                try:
                    down = os.open(sub, flags, dir_fd=fd)
                except PermissionError:
                    os.chmod(sub, 0o700, dir_fd=fd, follow_symlinks=False)
                    down = os.open(sub, flags, dir_fd=fd)
                os.close(fd)
                fd = down
                below.append(sub)
            elif below:
                up = os.open("..", flags, dir_fd=fd)
                os.close(fd)
                fd = up
                os.rmdir(below.pop(), dir_fd=fd)
            else:
                break
    finally:
        os.close(fd)
    os.rmdir(root)


def child(request, job_fd, marks_fd, out, libc, zygote, in_memory_cgroup):
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

    readable = [*sys.path, *READABLE]
    layers = isolate(libc, tuple(map(int, limits)), readable, cwd, zygote, in_memory_cgroup)
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
