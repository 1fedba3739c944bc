"""Verified, resumable, atomic downloads against a real HTTP server on 127.0.0.1 (fast: small files)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from eqlv2.cli import main
from eqlv2.data import ChecksumError, DownloadError, download, manifest, unpack_zip
from eqlv2.data.manifest import ENTRIES, Entry, get_entry
from eqlv2.tools.download import fetch as fetch_named

DATA = bytes(range(256)) * 1200  # 307,200 bytes: several 1 MiB-or-smaller reads, and a resume point inside
SHA = hashlib.sha256(DATA).hexdigest()
CUT = 100_000


@dataclass
class Behaviour:
    """What the server does; tests set the fields, the handler reads them."""

    data: bytes = DATA
    truncate_first_after: int | None = None  # first request: send this many body bytes, then hang up
    stall_first_after: int | None = None  # first request: send this many body bytes, then go silent
    corrupt: bool = False
    ignore_range: bool = False
    fail_first: int = 0  # answer 500 this many times, then behave
    status: int | None = None  # answer every request with this status
    requests: list[dict] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        b: Behaviour = self.server.behaviour
        b.requests.append({"path": self.path, "range": self.headers.get("Range")})
        first = len(b.requests) == 1
        if b.status is not None:
            self.send_error(b.status)
            return
        if b.fail_first > 0:
            b.fail_first -= 1
            self.send_error(500)
            return
        data = b.data
        if b.corrupt:
            data = data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:]
        start = 0
        rng = self.headers.get("Range")
        if rng and not b.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if first and b.truncate_first_after is not None:
            self.wfile.write(body[: b.truncate_first_after])
            self.wfile.flush()
            return  # HTTP/1.0: the connection closes short of Content-Length
        if first and b.stall_first_after is not None:
            self.wfile.write(body[: b.stall_first_after])
            self.wfile.flush()
            time.sleep(1.0)  # longer than the client's timeout
            return
        self.wfile.write(body)


class Server:
    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.behaviour = Behaviour()
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    @property
    def b(self) -> Behaviour:
        return self.httpd.behaviour

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/file.bin"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


def fetch(url: str, out: Path, **kwargs) -> Path:
    kwargs = {"progress": False, "backoff": 0.0, "timeout": 5, **kwargs}
    return download(url, out, kwargs.pop("sha256", SHA), **kwargs)


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir())


# --- HTTP ---------------------------------------------------------------------------------------------


def test_clean_download_verifies_and_renames(server, tmp_path):
    out = tmp_path / "sub" / "file.bin"
    assert fetch(server.url, out, expected_size=len(DATA)) == out
    assert out.read_bytes() == DATA
    assert leftovers(out) == ["file.bin"]  # no .part, no .lock
    assert [r["range"] for r in server.b.requests] == [None]


def test_truncated_transfer_resumes_with_range(server, tmp_path):
    server.b.truncate_first_after = CUT
    out = tmp_path / "file.bin"
    fetch(server.url, out)
    assert out.read_bytes() == DATA
    assert [r["range"] for r in server.b.requests] == [None, f"bytes={CUT}-"]
    assert leftovers(out) == ["file.bin"]


def test_stalled_transfer_times_out_and_resumes(server, tmp_path):
    server.b.stall_first_after = CUT
    out = tmp_path / "file.bin"
    fetch(server.url, out, timeout=0.3)
    assert out.read_bytes() == DATA
    assert [r["range"] for r in server.b.requests] == [None, f"bytes={CUT}-"]


def test_resume_across_runs_hashes_the_existing_partial_file(server, tmp_path):
    out = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(DATA[:CUT])  # left by a killed job
    fetch(server.url, out, expected_size=len(DATA))
    assert out.read_bytes() == DATA
    assert [r["range"] for r in server.b.requests] == [f"bytes={CUT}-"]


def test_corrupted_bytes_raise_and_leave_nothing(server, tmp_path):
    server.b.corrupt = True
    out = tmp_path / "file.bin"
    with pytest.raises(ChecksumError) as info:
        fetch(server.url, out)
    message = str(info.value)
    assert str(out) in message and SHA in message
    corrupted = DATA[:1000] + bytes([DATA[1000] ^ 0xFF]) + DATA[1001:]
    assert info.value.expected == SHA and info.value.actual == hashlib.sha256(corrupted).hexdigest()
    assert info.value.actual in message
    assert leftovers(out) == []


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.b.truncate_first_after = CUT
    server.b.ignore_range = True
    out = tmp_path / "file.bin"
    fetch(server.url, out)
    assert out.read_bytes() == DATA
    assert [r["range"] for r in server.b.requests] == [None, f"bytes={CUT}-"]  # asked, got a 200


def test_416_for_a_stale_partial_file_restarts(server, tmp_path):
    out = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(b"x" * (len(DATA) + 10))  # no expected size to catch it
    fetch(server.url, out)
    assert out.read_bytes() == DATA
    assert [r["range"] for r in server.b.requests] == [f"bytes={len(DATA) + 10}-", None]


def test_416_for_a_complete_partial_file_only_verifies(server, tmp_path):
    out = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(DATA)
    fetch(server.url, out)
    assert out.read_bytes() == DATA
    assert [r["range"] for r in server.b.requests] == [f"bytes={len(DATA)}-"]


def test_partial_file_longer_than_expected_restarts_without_range(server, tmp_path):
    out = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(b"x" * (len(DATA) + 1))
    fetch(server.url, out, expected_size=len(DATA))
    assert out.read_bytes() == DATA
    assert [r["range"] for r in server.b.requests] == [None]


def test_server_errors_are_retried(server, tmp_path):
    server.b.fail_first = 2
    out = tmp_path / "file.bin"
    fetch(server.url, out, retries=2)
    assert out.read_bytes() == DATA
    assert len(server.b.requests) == 3
    server.b.status = 503
    with pytest.raises(
        DownloadError, match=r"giving up after 2 attempts, last: HTTP 503 Service Unavailable$"
    ):
        fetch(server.url, tmp_path / "other.bin", retries=1)
    assert leftovers(out) == ["file.bin"]


def test_retries_used_up_is_a_clear_error_and_keeps_the_partial_file(server, tmp_path):
    server.b.truncate_first_after = CUT
    out = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match=r"giving up after 1 attempts.*next run resumes"):
        fetch(server.url, out, retries=0)
    assert (tmp_path / "file.bin.part").stat().st_size == CUT
    fetch(server.url, out)  # the next run resumes
    assert out.read_bytes() == DATA
    assert server.b.requests[-1]["range"] == f"bytes={CUT}-"


def test_404_fails_at_once(server, tmp_path):
    server.b.status = 404
    out = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match=r"file\.bin: HTTP 404") as info:
        fetch(server.url, out, retries=3, backoff=10.0)  # a retry would sleep 10 s
    assert server.url in str(info.value)
    assert len(server.b.requests) == 1
    assert leftovers(out) == []


def test_wrong_size_on_the_server_is_refused(server, tmp_path):
    with pytest.raises(DownloadError, match="the server has 307200 bytes, the expected size is 5"):
        fetch(server.url, tmp_path / "file.bin", expected_size=5)


def test_existing_good_file_makes_no_request(server, tmp_path):
    out = tmp_path / "file.bin"
    out.write_bytes(DATA)
    fetch(server.url, out)
    assert server.b.requests == []


def test_existing_bad_file_is_an_error_and_kept(server, tmp_path):
    out = tmp_path / "file.bin"
    out.write_bytes(b"something else")
    with pytest.raises(ChecksumError, match="already exists but its sha256 is .*never overwritten"):
        fetch(server.url, out)
    with pytest.raises(ChecksumError, match="already exists with 14 bytes, not the expected"):
        fetch(server.url, out, expected_size=len(DATA))
    assert out.read_bytes() == b"something else"
    assert server.b.requests == []


def test_missing_sha256_is_refused(server, tmp_path):
    with pytest.raises(ValueError, match="no sha256 .*--sha256"):
        fetch(server.url, tmp_path / "file.bin", sha256=None)
    with pytest.raises(ValueError, match="not a sha256"):
        fetch(server.url, tmp_path / "file.bin", sha256="abc")
    with pytest.raises(DownloadError, match="unsupported URL scheme 'ftp'"):
        fetch("ftp://127.0.0.1/file.bin", tmp_path / "file.bin")
    assert server.b.requests == []


def test_a_second_process_on_the_same_output_is_refused(server, tmp_path):
    out = tmp_path / "file.bin"
    fd = os.open(tmp_path / "file.bin.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(DownloadError, match="another process is downloading it"):
            fetch(server.url, out)
    finally:
        os.close(fd)
    assert server.b.requests == []


def test_progress_is_not_per_chunk(server, tmp_path, capsys):
    fetch(server.url, tmp_path / "file.bin", progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert 1 <= len(lines) <= 3 and all(line.startswith("eqlv2 download: ") for line in lines)


# --- local copies -------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_url", [True, False], ids=["file-url", "path"])
def test_local_copy_is_verified(tmp_path, as_url):
    src = tmp_path / "copy of.bin"
    src.write_bytes(DATA)
    out = tmp_path / "out" / "file.bin"
    fetch(src.as_uri() if as_url else str(src), out, expected_size=len(DATA))
    assert out.read_bytes() == DATA
    assert leftovers(out) == ["file.bin"]


def test_bad_local_copy_raises_and_leaves_nothing(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(DATA[:-1] + b"\0")
    out = tmp_path / "out" / "file.bin"
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        fetch(str(src), out)
    with pytest.raises(ChecksumError, match="not the expected 5"):
        fetch(str(src), out, expected_size=5)
    assert leftovers(out) == []
    with pytest.raises(FileNotFoundError):
        fetch(str(tmp_path / "absent.bin"), out)


# --- unpack_zip ---------------------------------------------------------------------------------------


def test_unpack_zip_extracts_into_place(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("annotations/one.json", "{}")
        zf.writestr("two.txt", "2")
    dest = tmp_path / "dest"
    paths = unpack_zip(archive, dest)
    assert paths == [dest / "annotations" / "one.json", dest / "two.txt"]
    assert (dest / "two.txt").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "dest"]  # temp dir gone
    assert unpack_zip(archive, tmp_path / "only", members=["two.txt"]) == [tmp_path / "only" / "two.txt"]
    with pytest.raises(ValueError, match="no member named 'nope'"):
        unpack_zip(archive, dest, members=["nope"])


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "/abs/evil"])
def test_unpack_zip_rejects_path_traversal(tmp_path, name):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.txt", "ok")
        zf.writestr(name, "bad")
    with pytest.raises(ValueError, match="unsafe member name"):
        unpack_zip(archive, tmp_path / "dest" / "inner")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "dest" / "evil").exists()
    assert not (tmp_path / "dest" / "inner" / "fine.txt").exists()  # refused before writing anything


def test_unpack_zip_rejects_non_zip(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a zip archive"):
        unpack_zip(tmp_path / "x.zip", tmp_path / "dest")


# --- manifest and CLI ---------------------------------------------------------------------------------


def test_manifest_entries_are_well_formed():
    names = [e.name for e in ENTRIES]
    assert len(names) == len(set(names))
    for entry in ENTRIES:
        assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
        assert entry.url.startswith(("http://", "https://"))
        assert entry.size is None or entry.size > 0
        if entry.dataset == "original_checkpoints":  # Google Drive names files by id, not by name
            assert entry.sha256 is None and "drive.usercontent.google.com/download?id=" in entry.url
        else:
            assert entry.url.endswith(entry.name)
    assert {"lvis_v1_train.json.zip", "lvis_v1_val.json.zip", "train2017.zip", "val2017.zip"} <= set(names)
    assert sum(e.dataset == "openimages_challenge2019" for e in ENTRIES) == 6
    assert sum(e.dataset == "original_checkpoints" for e in ENTRIES) == 7
    for name, prefix in (("resnet50-0676ba61.pth", "0676ba61"), ("resnet101-63fe2227.pth", "63fe2227")):
        assert get_entry(name).sha256.startswith(prefix)  # torchvision names its files by the hash


def test_an_entry_without_a_known_hash_is_refused_with_the_reason(tmp_path):
    with pytest.raises(ValueError, match="set published.eqlv2.sha256 in the config"):
        fetch_named("eqlv2-original-lvis-v1-eqlv2.pth", out=tmp_path / "x.pth")
    assert not any(tmp_path.iterdir())


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["download", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_url_form(server, tmp_path, capsys):
    out = tmp_path / "file.bin"
    code, stdout, _ = run_cli(capsys, "--url", server.url, "--sha256", SHA, "--size", str(len(DATA)),
                              "--out", str(out), "--quiet")  # fmt: skip
    assert code == 0 and stdout.strip() == str(out) and out.read_bytes() == DATA


def test_cli_errors_are_one_line(server, tmp_path, capsys):
    out = tmp_path / "file.bin"
    server.b.corrupt = True
    code, _, err = run_cli(capsys, "--url", server.url, "--sha256", SHA, "--out", str(out), "--quiet")
    assert code == 2 and err.count("\n") == 1 and err.startswith("eqlv2 download: error: ")
    assert "sha256 mismatch" in err and not out.exists()

    server.b.status = 404
    code, _, err = run_cli(capsys, "--url", server.url, "--sha256", SHA, "--out", str(out), "--quiet")
    assert code == 2 and err.count("\n") == 1 and "HTTP 404" in err and server.url in err

    code, _, err = run_cli(capsys, "--url", server.url, "--out", str(out))
    assert code == 2 and "missing: --sha256" in err
    code, _, err = run_cli(capsys, "no-such-entry")
    assert code == 2 and err.count("\n") == 1 and "no manifest entry 'no-such-entry'" in err
    code, _, err = run_cli(capsys)
    assert code == 2 and "give a manifest NAME" in err


def test_cli_list(capsys):
    code, stdout, _ = run_cli(capsys, "--list")
    assert code == 0
    for entry in ENTRIES:
        assert entry.name in stdout and entry.url in stdout


def test_cli_manifest_entry_with_local_source(tmp_path, capsys, monkeypatch):
    src = tmp_path / "mirror" / "thing.bin"
    src.parent.mkdir()
    src.write_bytes(DATA)
    entry = Entry("thing.bin", "https://invalid.example/thing.bin", SHA, len(DATA), "a test file", "test")
    monkeypatch.setattr(manifest, "ENTRIES", (*ENTRIES, entry))
    monkeypatch.chdir(tmp_path)
    code, stdout, _ = run_cli(capsys, "thing.bin", "--url", str(src), "--quiet")  # default --out: ./NAME
    assert code == 0 and (tmp_path / "thing.bin").read_bytes() == DATA
    code, _, err = run_cli(capsys, "thing.bin", "--sha256", "0" * 64, "--quiet")
    assert code == 2 and "disagrees with the manifest" in err


def test_cli_manifest_entry_without_sha256_needs_it_explicitly(server, tmp_path, capsys, monkeypatch):
    entry = Entry("nohash.bin", server.url, None, None, "a file of unknown hash", "test")
    monkeypatch.setattr(manifest, "ENTRIES", (*ENTRIES, entry))
    out = tmp_path / "nohash.bin"
    code, _, err = run_cli(capsys, "nohash.bin", "--out", str(out), "--quiet")
    assert code == 2 and err.count("\n") == 1
    assert "has no sha256" in err and "--sha256" in err
    assert server.b.requests == [] and not out.exists()
    code, _, _ = run_cli(capsys, "nohash.bin", "--out", str(out), "--sha256", SHA, "--quiet")
    assert code == 0 and out.read_bytes() == DATA
