"""Writing files so that a reader never sees half of one, even if we are killed mid-way."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PART = ".part"  # the suffix of a file being written


def write_atomic(path: Path, content: str | bytes) -> Path:
    """Write to a temp file beside ``path``, then rename it over ``path``.

    Text is written as UTF-8 with LF line endings. The file gets the usual mode for a new
    file (0666 less the umask), as `open` would give it; mkstemp's 0600 would keep
    exports and reports from the other users they are meant for."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{PART}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


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
