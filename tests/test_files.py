"""Atomic file writes: whole files only, with the mode a new file normally gets."""

import os
import stat

import pytest

from tracker.files import remove_parts, write_atomic


@pytest.fixture
def umask():
    """Set the process umask for one test, and put the old one back."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_written_file_gets_the_mode_the_umask_allows(tmp_path, umask, mask, mode):
    umask(mask)
    path = write_atomic(tmp_path / "results.csv", "a,b\n")
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert path.read_text() == "a,b\n"


def test_rewriting_replaces_the_whole_file_and_leaves_no_temp_file(tmp_path, umask):
    path = tmp_path / "report.html"
    write_atomic(path, "x" * 1000)
    write_atomic(path, b"short")
    assert path.read_bytes() == b"short"
    assert os.listdir(tmp_path) == ["report.html"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, umask):
    (tmp_path / "target").mkdir()  # renaming a file over a folder fails
    with pytest.raises(OSError):
        write_atomic(tmp_path / "target", "data")
    assert sorted(os.listdir(tmp_path)) == ["target"]
    assert (tmp_path / "target").is_dir()


def test_remove_parts_takes_only_the_temp_files_of_the_paths_given(tmp_path):
    """What a writer killed mid-way leaves; other files, and other names' parts, stay."""
    keep = [".results.csv.0a1b2c3d4e5f", ".other.csv.0a1b2c3d4e5f.part", "results.csv.part", "results.csv"]
    gone = [
        ".results.csv.0a1b2c3d4e5f.part",
        ".results.csv.ffffffffffff.part",
        ".log.jsonl.123456abcdef.part",
    ]
    for name in keep + gone:
        (tmp_path / name).write_text("x")
    remove_parts([tmp_path / "results.csv", tmp_path / "log.jsonl", tmp_path / "absent" / "x.csv"])
    assert sorted(os.listdir(tmp_path)) == sorted(keep)


def fifo(path):
    os.mkfifo(path)


def folder(path):
    path.mkdir()


def link_to(make):
    """A symbolic link at the path, to what ``make`` puts beside it."""

    def make_link(path):
        make(path.with_name("real"))
        path.symlink_to("real")

    return make_link


def regular(path):
    path.write_text("kept\n")


@pytest.mark.parametrize(
    "make, kind",
    [
        (folder, "a folder"),
        (fifo, r"a named pipe \(FIFO\)"),
        (link_to(fifo), r"a symbolic link \(to a named pipe \(FIFO\)\)"),
        (link_to(folder), r"a symbolic link \(to a folder\)"),
        (link_to(regular), r"a symbolic link \(to a file\)"),  # /dev/stdout -> a file, as root
        (link_to(lambda path: None), r"a symbolic link \(to nothing\)"),
    ],
    ids=["folder", "pipe", "link-to-pipe", "link-to-folder", "link-to-file", "dangling-link"],
)
def test_only_a_plain_file_is_replaced(tmp_path, make, kind):
    """Renaming over a device, a pipe or a link would replace it (`-o /dev/stdout` as root
    replaced the /dev/stdout link): refused before anything is written, all left as it was."""
    target = tmp_path / "target"
    make(target)
    before = {p.name: (os.lstat(p).st_mode, os.path.islink(p) and os.readlink(p)) for p in tmp_path.iterdir()}
    with pytest.raises(OSError, match=rf"target is {kind}; only a plain file is replaced"):
        write_atomic(target, "data")
    after = {p.name: (os.lstat(p).st_mode, os.path.islink(p) and os.readlink(p)) for p in tmp_path.iterdir()}
    assert after == before  # no temp file either
    if (tmp_path / "real").is_file():
        assert (tmp_path / "real").read_text() == "kept\n"
