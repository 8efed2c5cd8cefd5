"""Writing files so that a reader never sees half of one, even if we are killed mid-way."""

from __future__ import annotations

import errno
import os
import secrets
import stat
import tempfile
from pathlib import Path

PART = ".part"  # the suffix of a file being written


class NotAFile(OSError):
    """What is where a file is to be written is no regular file (a folder, a device, a
    pipe, a symbolic link): write_atomic would replace it, so it refuses. ``strerror``
    says what is there."""

    def __str__(self) -> str:
        return f"{self.filename} is {self.strerror}; only a plain file is replaced"


def kind(mode: int) -> str:
    """What a file of this ``st_mode`` is, said for a message ("a named pipe (FIFO)")."""
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISREG, "a file"),
    ):
        if test(mode):
            return name
    return "an unknown kind of file"


def check_replaceable(path: str | os.PathLike) -> None:
    """Raise NotAFile unless ``path`` is absent or a regular file: the only things
    write_atomic may create or replace. A symbolic link is refused whatever it points to:
    renaming over it would replace the link (`/dev/stdout`, say), and writing through it
    would replace whatever file it leads to. OSError when the path cannot be looked at (a
    name too long, a folder we may not search)."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return  # absent: created
    if stat.S_ISREG(mode):
        return
    if stat.S_ISLNK(mode):
        try:
            what = f"a symbolic link (to {kind(os.stat(path).st_mode)})"
        except OSError:
            what = "a symbolic link (to nothing)"
    else:
        what = kind(mode)
    raise NotAFile(None, what, str(path))


def database_files(db: str | os.PathLike) -> list[Path]:
    """The files SQLite keeps for the database ``db``: nothing else may be written there."""
    return [Path(f"{db}{suffix}") for suffix in ("", "-wal", "-shm", "-journal")]


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same path once links are followed, or, both
    existing, the same inode (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def folder_problem(folder: str | os.PathLike, *, may_create: bool = False) -> str | None:
    """Why no file can be written in ``folder``, or None. Tried by making (and removing) a
    folder there, not guessed from permissions, which root, /proc or a read-only mount
    misreport. With ``may_create`` a missing folder is fine when its nearest existing
    ancestor would take it (it is made when written to)."""
    probe = Path(folder)
    try:
        while may_create and not probe.exists():
            probe = probe.parent
        if not probe.exists():
            return f"folder {folder} does not exist"
        if not probe.is_dir():
            return f"{probe} is not a folder"
    except OSError as e:  # a name too long, a folder we may not enter
        return e.strerror
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".synth-probe-", dir=probe))
    except OSError:
        return f"no permission to write in folder {probe}"
    return None


def read_plain(path: str | os.PathLike, most: int) -> bytes:
    """The bytes of a regular file of at most ``most`` bytes. A user may name a pipe
    (open() would wait for a writer), a device (/dev/zero never ends) or a huge file:
    OSError saying so, before anything is read. The file is opened without blocking."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{kind(st.st_mode)}, not a plain file", str(path))
        if st.st_size > most:
            raise OSError(errno.EFBIG, f"{st.st_size:,} bytes, more than {most:,}", str(path))
        chunks, size = [], 0
        while chunk := os.read(fd, most + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > most:  # it grew meanwhile
                raise OSError(errno.EFBIG, f"more than {most:,} bytes", str(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_atomic(path: Path, content: str | bytes) -> Path:
    """Write to a temp file beside ``path``, then rename it over ``path``.

    Only a regular file is replaced: a folder, a device, a pipe, a symbolic link are
    refused (NotAFile, see check_replaceable) before anything is written.

    Text is written as UTF-8 with LF line endings. The file gets the usual mode for a new
    file (0666 less the umask), as `open` would give it; mkstemp's 0600 would keep
    exports and reports from the other users they are meant for."""
    write_all_atomic({path: content})
    return path


def write_all_atomic(contents: dict[Path, str | bytes]) -> None:
    """``write_atomic`` for several files at once, all or none: every file is written
    to its temp file first, and only when all are written (a full disk fails here,
    leaving none) are they renamed over their paths, in the order given."""
    for path in contents:
        check_replaceable(path)
    staged: list[tuple[Path, Path]] = []
    try:
        for path, content in contents.items():
            data = content.encode("utf-8") if isinstance(content, str) else content
            tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{PART}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass  # renamed already
        raise


def remove_parts(paths: list[Path]) -> None:
    """Remove what a writer killed mid-way left of ``paths``: its hidden temp files."""
    by_folder: dict[Path, set[str]] = {}
    for path in paths:
        by_folder.setdefault(path.parent, set()).add(path.name)
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            name = entry.name
            if name.startswith(".") and name.endswith(PART) and name[1:].rsplit(".", 2)[0] in names:
                os.unlink(entry.path)
