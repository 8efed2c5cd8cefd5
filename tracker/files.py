"""Writing files so that a reader never sees half of one, even if we are killed mid-way."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path: Path, content: str | bytes) -> Path:
    """Write to a temp file beside ``path``, then rename it over ``path``.

    Text is written as UTF-8 with LF line endings. The file gets the usual mode for a new
    file (0666 less the umask), as `open` would give it; mkstemp's 0600 would keep
    exports and reports from the other users they are meant for."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
