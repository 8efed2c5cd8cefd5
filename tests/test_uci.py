"""synth.datasets.uci on small invented files in the UCI formats: parsing, line endings, the
local folder, the cache, and downloads from a UCI stand-in on 127.0.0.1."""

import gzip
import http.server
import io
import socket
import threading
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest

from synth.datasets import uci
from synth.errors import SourceError

# How UCI ships each file: its line ending, and whether the file ends with a newline
# and an empty line (adult.data), a newline, or nothing (HTRU_2.csv).
FORMATS = {
    "adult": ("\n", "\n\n"),
    "mushroom": ("\r\n", "\r\n"),
    "cdc_diabetes": ("\n", "\n"),
    "htru2": ("\r", ""),
    "chess": ("\n", "\n"),
}
ARCHIVES = {  # where the UCI stand-in serves each file, as UCI lays it out
    "adult": {"adult.names": b"names", "adult.data": None},
    "mushroom": {"MushroomDataset.zip": {"MushroomDataset/secondary_data.csv": None}},
    "cdc_diabetes": None,  # a plain CSV
    "htru2": {"HTRU_2.arff": b"@relation x", "HTRU_2.csv": None},
    "chess": {"Index": b"", "kr-vs-kp.data": None},
}
# Short and long (over 8 bytes) category names, a missing value, names sharing prefixes.
CATEGORIES = ["?", "Married-civ-spouse", "Married-AF-spouse", "b", "", "ba", "Private"]


def invented_rows(source, n=7):
    """n made-up rows in the source's shape (never UCI data): features, then the class."""
    pos, neg = min(source.positive), min(source.negative)
    rows = []
    for r in range(n):
        features = [
            f"{(r * 7 + j) % 5 - 1.5:.2f}" if j in source.numeric else CATEGORIES[(r + j) % len(CATEGORIES)]
            for j in range(len(source.features))
        ]
        rows.append((features, pos if r % 3 == 0 else neg))
    return rows


def file_bytes(name, rows, eol=None):
    """The rows written as the UCI file of source ``name`` (UCI's CDC file: ID first)."""
    source = uci.SOURCES[name]
    eol, ending = (eol, eol) if eol else FORMATS[name]
    sep = source.sep
    lines = []
    if name == "mushroom":
        lines.append(sep.join(["class", *source.features]))
        lines += [sep.join([label, *features]) for features, label in rows]
    elif name == "cdc_diabetes":
        lines.append(sep.join(["ID", source.label, *source.features]))
        lines += [sep.join([str(i), label, *f]) for i, (f, label) in enumerate(rows)]
    else:
        lines += [sep.join([*features, label]) for features, label in rows]
    return (eol.join(lines) + ending).encode()


def zip_bytes(members):
    """A zip archive of {name: bytes or a dict (a nested zip)}."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, content in members.items():
            archive.writestr(member, zip_bytes(content) if isinstance(content, dict) else content)
    return buffer.getvalue()


def archive_bytes(name, content):
    """What the UCI stand-in serves for source ``name`` when its file holds ``content``."""

    def fill(members):
        return {
            m: fill(c) if isinstance(c, dict) else content if c is None else c for m, c in members.items()
        }

    layout = ARCHIVES[name]
    return content if layout is None else zip_bytes(fill(layout))


def assert_table(table, rows):
    assert len(table) == len(rows)
    assert [table.row(i) for i in range(len(rows))] == [tuple(f) for f, _ in rows]
    expected = [int(label in table.source.positive) for _, label in rows]
    assert table.labels.tolist() == expected and table.labels.dtype == np.int8
    for j, column in enumerate(table.columns):
        assert list(column.values) == sorted({f[j] for f, _ in rows})


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test here may reach the internet or see the user's settings."""
    monkeypatch.delenv("SYNTH_UCI_DIR", raising=False)
    monkeypatch.delenv("SYNTH_CACHE_DIR", raising=False)
    monkeypatch.setenv("SYNTH_UCI_BASE_URL", "http://127.0.0.1:9")  # nothing listens


@pytest.fixture
def dead_url():
    """A loopback URL where nothing listens (a port just freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def server(tmp_path):
    """A UCI stand-in on 127.0.0.1 serving files under ``root``; ``paths`` logs requests."""
    root = tmp_path / "www"
    root.mkdir()
    paths = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            paths.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{httpd.server_port}", root=root, paths=paths)
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def serve(server, name, payload):
    path = server.root / uci.SOURCES[name].download
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return f"/{uci.SOURCES[name].download}"


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("name", uci.SOURCES)
def test_local_file_in_uci_format_parses(tmp_path, name, compressed):
    rows = invented_rows(uci.SOURCES[name])
    content = file_bytes(name, rows)
    file = uci.SOURCES[name].file
    if compressed:
        (tmp_path / f"{file}.gz").write_bytes(gzip.compress(content))
    else:
        (tmp_path / file).write_bytes(content)
    table = uci.load_table(name, uci_dir=tmp_path)
    assert table.path.name == file + (".gz" if compressed else "")
    assert_table(table, rows)


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
@pytest.mark.parametrize("name", ["htru2", "mushroom"])
def test_every_line_ending_gives_the_same_table(tmp_path, name, eol):
    rows = invented_rows(uci.SOURCES[name], n=12)
    (tmp_path / uci.SOURCES[name].file).write_bytes(file_bytes(name, rows, eol))
    assert_table(uci.load_table(name, uci_dir=tmp_path), rows)


def test_blank_lines_bom_and_quoted_header_names(tmp_path):
    source = uci.SOURCES["cdc_diabetes"]
    header = ",".join([f'"{source.label}"', *source.features])
    line = ",".join(["1.0", *["0.0"] * 3, "40.0", *["1.0"] * 17])
    (tmp_path / source.file).write_text(f"\ufeff{header}\n\n{line}\n\n\n{line}\n\n")
    table = uci.load_table("cdc_diabetes", uci_dir=tmp_path)
    assert table.labels.tolist() == [1, 1]
    assert table.row(1)[3] == "40.0" and table.columns[3].numbers.tolist() == [40.0]


def test_tables_are_cached_in_process_and_read_only(tmp_path):
    rows = invented_rows(uci.SOURCES["chess"])
    (tmp_path / "kr-vs-kp.data").write_bytes(file_bytes("chess", rows))
    table = uci.load_table("chess", uci_dir=tmp_path)
    assert uci.load_table("chess", uci_dir=tmp_path) is table
    with pytest.raises(ValueError):
        table.labels[0] = 1
    with pytest.raises(ValueError):
        table.columns[0].codes[0] = 1


def test_a_changed_file_is_read_again(tmp_path):
    path = tmp_path / "kr-vs-kp.data"
    path.write_bytes(file_bytes("chess", invented_rows(uci.SOURCES["chess"], n=4)))
    assert len(uci.load_table("chess", uci_dir=tmp_path)) == 4
    path.write_bytes(file_bytes("chess", invented_rows(uci.SOURCES["chess"], n=5)))
    assert len(uci.load_table("chess", uci_dir=tmp_path)) == 5


@pytest.mark.parametrize("name", uci.SOURCES)
def test_download_fills_the_cache_then_the_cache_serves(tmp_path, server, dead_url, name):
    rows = invented_rows(uci.SOURCES[name])
    content = file_bytes(name, rows)
    requested = serve(server, name, archive_bytes(name, content))
    cache = tmp_path / "cache"

    table = uci.load_table(name, cache_dir=cache, base_url=server.url)
    assert server.paths == [requested]
    assert_table(table, rows)
    cached = cache / uci.SOURCES[name].file
    assert cached.read_bytes() == content  # the file itself, out of its archive
    assert sorted(p.name for p in cache.iterdir()) == [cached.name]  # no temp files left

    again = uci.load_table(name, cache_dir=cache, base_url=dead_url)
    assert server.paths == [requested]
    assert_table(again, rows)


def test_settings_come_from_the_environment(tmp_path, server, monkeypatch):
    rows = invented_rows(uci.SOURCES["htru2"])
    serve(server, "htru2", archive_bytes("htru2", file_bytes("htru2", rows)))
    monkeypatch.setenv("SYNTH_UCI_BASE_URL", server.url)
    monkeypatch.setenv("SYNTH_CACHE_DIR", str(tmp_path / "cache"))
    assert_table(uci.load_table("htru2"), rows)
    assert (tmp_path / "cache" / "HTRU_2.csv").is_file()

    local = invented_rows(uci.SOURCES["htru2"], n=3)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "HTRU_2.csv").write_bytes(file_bytes("htru2", local))
    monkeypatch.setenv("SYNTH_UCI_DIR", str(tmp_path / "mine"))
    assert_table(uci.load_table("htru2"), local)  # the UCI folder comes before the cache
    assert len(server.paths) == 1


def test_http_404_is_one_clear_line(tmp_path, server):
    with pytest.raises(SourceError) as e:
        uci.load_table("chess", cache_dir=tmp_path / "cache", base_url=server.url)
    message = str(e.value)
    url = f"{server.url}/static/public/22/chess+king+rook+vs+king+pawn.zip"
    assert f"downloading {url} failed: HTTP 404" in message
    assert e.value.exit_code == 1  # a server's fault, not the user's input
    assert "set SYNTH_UCI_DIR" in message and "kr-vs-kp.data" in message
    assert "\n" not in message
    assert not (tmp_path / "cache").exists()


def test_corrupt_archive_is_refused_and_not_cached(tmp_path, server):
    serve(server, "adult", b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(SourceError, match="not a valid zip archive"):
        uci.load_table("adult", cache_dir=tmp_path / "cache", base_url=server.url)
    assert not (tmp_path / "cache").exists()


def test_archive_without_the_file_is_refused(tmp_path, server):
    serve(server, "mushroom", zip_bytes({"MushroomDataset.zip": {"primary_data.csv": b"x"}}))
    with pytest.raises(SourceError, match="the archive holds no secondary_data.csv"):
        uci.load_table("mushroom", cache_dir=tmp_path / "cache", base_url=server.url)


def test_a_download_that_does_not_parse_is_not_kept(tmp_path, server):
    serve(server, "chess", zip_bytes({"kr-vs-kp.data": b"f,t,won\nf,t,won\n"}))
    with pytest.raises(SourceError, match=r"served a file that cannot be read: .*3 fields"):
        uci.load_table("chess", cache_dir=tmp_path / "cache", base_url=server.url)
    assert list((tmp_path / "cache").iterdir()) == []


def test_uci_dir_without_the_file_and_no_server(tmp_path, dead_url):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError) as e:
        uci.load_table("htru2", uci_dir=empty, cache_dir=tmp_path / "cache", base_url=dead_url)
    message = str(e.value)
    assert f"is in neither {empty} nor the cache {tmp_path / 'cache'}" in message
    assert f"downloading {dead_url}/static/public/372/htru2.zip failed" in message
    assert "set SYNTH_UCI_DIR (or --uci-dir) to the folder holding HTRU_2.csv" in message


def test_a_missing_uci_dir_is_named_as_such(tmp_path, dead_url):
    with pytest.raises(SourceError, match="no such folder"):
        uci.load_table("htru2", uci_dir=tmp_path / "nope", cache_dir=tmp_path, base_url=dead_url)


BROKEN = [
    ("chess", "f,t\n", "line 1 (not counting blank lines) has 2 fields, expected 37"),
    ("htru2", "1,2,3,4,5,6,7,8,0\n1,2,3,4,5,6,7,8\n", "line 2 (not counting blank lines) has 8"),
    ("htru2", "1,2,3,4,5,6,7,x,0\n", "numeric column 'DM_kurtosis' holds 'x'"),
    ("htru2", "1,2,3,4,5,6,7,8,2\n", "unexpected class value(s) '2' in the class column #9"),
    ("mushroom", "class;cap-shape\ne;x\n", "the header lacks the column(s) cap-diameter"),
    ("adult", "", "no data rows"),
    ("htru2", "1,2,3,\xff,5,6,7,8,0\n", "not UTF-8 text"),
]


@pytest.mark.parametrize("name,text,message", BROKEN, ids=[b[2][:24] for b in BROKEN])
def test_malformed_files_are_refused_with_the_reason(tmp_path, name, text, message):
    path = tmp_path / uci.SOURCES[name].file
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(SourceError) as e:
        uci.load_table(name, uci_dir=tmp_path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value)


def test_unknown_source():
    with pytest.raises(SourceError, match="unknown UCI source 'iris'"):
        uci.load_table("iris")


def test_a_broken_cached_file_says_how_to_recover(tmp_path):
    (tmp_path / "kr-vs-kp.data").write_text("f,t,won\n")
    with pytest.raises(SourceError, match=r"has 3 fields.*delete the cached file"):
        uci.load_table("chess", cache_dir=tmp_path)


def test_an_unwritable_cache_is_one_clear_line(tmp_path, server):
    rows = invented_rows(uci.SOURCES["chess"])
    serve(server, "chess", archive_bytes("chess", file_bytes("chess", rows)))
    (tmp_path / "file").write_text("")
    with pytest.raises(SourceError, match="cannot write the UCI cache .*set SYNTH_CACHE_DIR"):
        uci.load_table("chess", cache_dir=tmp_path / "file" / "cache", base_url=server.url)
