"""Verified, resumable, atomic downloads with the standard library only, and a careful zip extractor.

``download(url, out, sha256)`` streams into ``out.part`` while hashing and renames it to ``out`` only
once the sha256 matches, so ``out`` is either absent or the verified file; a mismatch removes the partial
file and raises :class:`ChecksumError`.  An interrupted transfer (killed job, reset connection, timeout,
5xx) is resumed from the partial file's length with an HTTP ``Range`` request, within a call (up to
``retries`` times, with exponential backoff) and across calls; a server that ignores ranges (200
instead of 206) or refuses them (416) makes it start over.  Other 4xx statuses fail at once.  ``file://``
URLs and plain paths are copied with the same verification, so an existing copy can be used instead.
``out`` already there and matching is left alone; ``out`` there and not matching is an error, never
overwritten.  A lock file ``out.lock`` (flock) keeps two processes from writing the same ``out.part``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

CHUNK_BYTES = 1 << 20
PROGRESS_INTERVAL_S = 5.0
USER_AGENT = "eqlv2-download (Python urllib)"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


class DownloadError(ValueError):
    """A download that cannot be completed: an HTTP error status, retries used up, an unusable source.

    A ``ValueError`` so that ``eqlv2`` reports it as a one-line error with exit status 2.
    """


class ChecksumError(DownloadError):
    """The bytes are not the expected ones (sha256, or a size that rules them out)."""

    def __init__(self, path: str | Path, expected: str, actual: str | None, message: str | None = None):
        self.path = Path(path)
        self.expected = expected
        self.actual = actual
        super().__init__(message or f"{path}: sha256 mismatch: expected {expected}, got {actual}")


class _Transient(Exception):
    """A failure worth retrying; the partial file is kept and the next attempt resumes it."""


def sha256sum(path: str | Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def download(
    url: str,
    out: str | Path,
    sha256: str | None,
    expected_size: int | None = None,
    retries: int = 3,
    timeout: float = 60,
    progress: bool = True,
    backoff: float = 2.0,
) -> Path:
    """Fetch ``url`` (http, https, file:// or a local path) to ``out``, verified against ``sha256``.

    ``expected_size`` (bytes), when given, lets a wrong or over-long partial file be caught before the
    hash.  ``retries`` is the number of retries after the first attempt for transient failures, waiting
    ``backoff * 2**k`` seconds before retry ``k + 1``; ``timeout`` is the socket timeout in seconds.
    ``progress`` prints a line on stderr every few seconds; retries and restarts are reported always.
    Returns ``out``.
    """
    out = Path(out)
    expected = _normalise_sha256(sha256, url)
    if expected_size is not None and expected_size < 0:
        raise ValueError(f"expected_size must be >= 0, not {expected_size}")
    if out.exists() or out.is_symlink():
        return _verify_existing(out, expected, expected_size, progress)

    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    with _exclusive(out.with_name(out.name + ".lock"), out):
        if out.exists():  # another process finished it between the check above and taking the lock
            return _verify_existing(out, expected, expected_size, progress)
        meter = _Progress(out.name, progress)
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme in ("http", "https"):
            meter.say(f"downloading {url} -> {out}")
            state = _http_download(url, part, expected_size, retries, timeout, backoff, meter)
        elif scheme in ("", "file"):
            source = _local_source(url)
            meter.say(f"copying {source} -> {out}")
            state = _copy_local(source, part, expected, expected_size, meter)
        else:
            raise DownloadError(
                f"{url}: unsupported URL scheme {scheme!r}; use http(s)://, file:// or a path"
            )

        actual = state.hexdigest()
        if actual != expected:
            part.unlink(missing_ok=True)
            raise ChecksumError(
                out,
                expected,
                actual,
                f"{out}: sha256 mismatch for {url}: expected {expected}, got {actual} ({state.size} bytes); "
                f"removed {part.name}"
                + ("; run again to download it afresh" if scheme.startswith("http") else ""),
            )
        with open(part, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(part, out)
        meter.say(f"verified sha256 {expected[:12]}...; wrote {out}")
    return out


def unpack_zip(archive: str | Path, dest_dir: str | Path, members: Iterable[str] | None = None) -> list[Path]:
    """Extract ``members`` (default: every file) of ``archive`` under ``dest_dir``; return their paths.

    Everything is first extracted into a temporary directory beside ``dest_dir`` (so a CRC error or a
    killed job leaves no half-written file in ``dest_dir``) and then renamed into place file by file.
    Absolute member names and names with a ``..`` component are refused before anything is written.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{archive}: not a zip archive ({err})") from None
    with zf:
        if members is None:
            chosen = [info for info in zf.infolist() if not info.is_dir()]
        else:
            by_name = {info.filename: info for info in zf.infolist()}
            names = list(members)
            missing = [name for name in names if name not in by_name]
            if missing:
                raise ValueError(f"{archive}: no member named {', '.join(map(repr, missing))}")
            chosen = [by_name[name] for name in names if not by_name[name].is_dir()]
        for info in chosen:
            _check_member_name(info.filename, archive)

        dest_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest_dir.parent, prefix=f".{dest_dir.name}.unpack-"))
        try:
            for info in chosen:
                target = tmp / info.filename
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with zf.open(info) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK_BYTES)
                except zipfile.BadZipFile as err:
                    raise ValueError(f"{archive}: member {info.filename!r} is damaged ({err})") from None
            extracted = []
            for info in chosen:
                final = dest_dir / info.filename
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp / info.filename, final)
                extracted.append(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return extracted


# --- internals ----------------------------------------------------------------------------------------


def _normalise_sha256(sha256: str | None, url: str) -> str:
    if sha256 is None:
        raise ValueError(
            f"no sha256 for {url}: refusing to fetch a file that cannot be verified; "
            "pass the expected hash explicitly (eqlv2 download ... --sha256 HEX, or sha256=...)"
        )
    value = sha256.strip().lower()
    if not _SHA256.fullmatch(value):
        raise ValueError(f"not a sha256 (64 hex digits): {sha256!r}")
    return value


def _verify_existing(out: Path, expected: str, expected_size: int | None, progress: bool) -> Path:
    if not out.is_file():
        raise DownloadError(f"{out} exists and is not a regular file; move it aside to download again")
    size = out.stat().st_size
    if expected_size is not None and size != expected_size:
        raise ChecksumError(
            out,
            expected,
            None,
            f"{out} already exists with {size} bytes, not the expected {expected_size}; it is not the file "
            "asked for and is never overwritten: move it aside or delete it to download again",
        )
    actual = sha256sum(out)
    if actual != expected:
        raise ChecksumError(
            out,
            expected,
            actual,
            f"{out} already exists but its sha256 is {actual}, not the expected {expected}; it is never "
            "overwritten: move it aside or delete it to download again",
        )
    _Progress(out.name, progress).say(f"{out} is already there and verified")
    return out


@contextlib.contextmanager
def _exclusive(lock_path: Path, out: Path) -> Iterator[None]:
    """Hold an flock on ``lock_path`` (removed afterwards); proceed unlocked where flock is unsupported."""
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DownloadError(
                f"{out}: another process is downloading it (it holds {lock_path}); wait for it to finish"
            ) from None
        except OSError:  # e.g. a network file system without flock
            break
        try:
            current = os.stat(lock_path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fd), current):
            break
        os.close(fd)  # the holder removed the file between our open and flock: take the new one
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        os.close(fd)


class _PartHash:
    """The partial file and the sha256 of its bytes, kept in step as it grows."""

    def __init__(self, path: Path):
        self.path = path
        self.hasher = hashlib.sha256()
        self.size = 0

    def sync(self) -> int:
        """Hash what is on disk unless this object already has (a resume after a previous run)."""
        on_disk = self.path.stat().st_size if self.path.exists() else 0
        if on_disk != self.size:
            self.hasher, self.size = hashlib.sha256(), 0
            with open(self.path, "rb") as handle:
                for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
                    self.update(block)
        return self.size

    def reset(self) -> None:
        open(self.path, "wb").close()
        self.hasher, self.size = hashlib.sha256(), 0

    def update(self, block: bytes) -> None:
        self.hasher.update(block)
        self.size += len(block)

    def hexdigest(self) -> str:
        return self.hasher.hexdigest()


class _Progress:
    """Progress on stderr: a line every ``PROGRESS_INTERVAL_S`` seconds, not one per chunk."""

    def __init__(self, label: str, enabled: bool):
        self.label = label
        self.enabled = enabled
        self.total: int | None = None
        self.start_time = self.last = time.monotonic()
        self.start_bytes = 0

    def say(self, message: str) -> None:
        if self.enabled:
            _stderr(message)

    def start(self, done: int, total: int | None) -> None:
        self.total = total
        self.start_time = self.last = time.monotonic()
        self.start_bytes = done
        if done:
            self.say(f"{self.label}: resuming at {_mib(done)} MiB")

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < PROGRESS_INTERVAL_S:
            return
        self.last = now
        rate = (done - self.start_bytes) / max(now - self.start_time, 1e-9)
        line = f"{self.label}: {_mib(done)} MiB"
        if self.total:
            line += f" of {_mib(self.total)} MiB ({100 * done / self.total:.1f}%)"
        line += f", {rate / 2**20:.1f} MiB/s"
        if self.total and rate > 0:
            line += f", about {_duration((self.total - done) / rate)} left"
        _stderr(line)


def _http_download(
    url: str,
    part: Path,
    expected_size: int | None,
    retries: int,
    timeout: float,
    backoff: float,
    meter: _Progress,
) -> _PartHash:
    state = _PartHash(part)
    failures = 0
    while True:
        try:
            _http_attempt(url, state, expected_size, timeout, meter)
            return state
        except _Transient as err:
            failures += 1
            if failures > retries:
                kept = f"; {part} keeps {state.size} bytes, the next run resumes there" if state.size else ""
                if not state.size:
                    part.unlink(missing_ok=True)
                raise DownloadError(
                    f"{url}: giving up after {failures} attempts, last: {err}{kept}"
                ) from None
            delay = backoff * 2 ** (failures - 1)
            _stderr(f"{url}: {err}; retry {failures} of {retries} in {delay:g} s")
            time.sleep(delay)


def _http_attempt(
    url: str, state: _PartHash, expected_size: int | None, timeout: float, meter: _Progress
) -> None:
    """One request: continue ``state.path`` from its length (or start it over) to the end of the body."""
    offset = state.sync()
    if expected_size is not None and offset > expected_size:
        _stderr(f"{state.path}: {offset} bytes, more than the expected {expected_size}; starting over")
        state.reset()
        offset = 0
    if expected_size is not None and offset == expected_size:
        return  # a complete partial file from an earlier run: only the hash is left to check

    for _ in range(2):  # a 416 for a stale partial file restarts once without a Range
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as err:
            err.close()
            if err.code == 416 and offset:
                match = _UNSATISFIED_RANGE.fullmatch(err.headers.get("Content-Range", "").strip())
                if match and int(match.group(1)) == offset:
                    return  # the partial file already holds the whole body
                _stderr(f"{url}: the server refused to resume at byte {offset} (HTTP 416); starting over")
                state.reset()
                offset = 0
                continue
            if err.code >= 500 or err.code in (408, 429):
                raise _Transient(f"HTTP {err.code} {err.reason}") from None
            raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
        except (OSError, http.client.HTTPException) as err:  # URLError, timeouts, resets, bad status lines
            raise _Transient(_describe(err)) from None
        break
    else:  # pragma: no cover - the second request carries no Range, so it cannot get a 416
        raise DownloadError(f"{url}: HTTP 416 without a Range request")

    with response:
        length = response.headers.get("Content-Length")
        announced = int(length) if length and length.isdigit() else None
        total = None
        if response.status == 206 and offset:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if not match or int(match.group(1)) != offset:
                state.reset()
                sent = response.headers.get("Content-Range")
                raise _Transient(f"asked to resume at byte {offset}, the server sent {sent}; starting over")
            total = int(match.group(3)) if match.group(3) != "*" else None
        elif response.status == 200:
            if offset:
                _stderr(f"{url}: the server ignored the Range request (HTTP 200); starting over")
                state.reset()
                offset = 0
            total = announced
        else:
            raise DownloadError(f"{url}: unexpected HTTP status {response.status} {response.reason}")
        if expected_size is not None and total is not None and total != expected_size:
            raise DownloadError(
                f"{url}: the server has {total} bytes, the expected size is {expected_size}; "
                "is the URL right?"
            )

        meter.start(offset, total)
        received = 0
        with open(state.path, "ab") as handle:
            while True:
                try:
                    block = response.read1(CHUNK_BYTES)  # what has arrived: a stall loses nothing
                except (OSError, http.client.HTTPException) as err:
                    raise _Transient(f"{_describe(err)} after {state.size} bytes") from None
                if not block:
                    break
                handle.write(block)
                state.update(block)
                received += len(block)
                meter.update(state.size)
    if announced is not None and received < announced:
        raise _Transient(f"the connection closed after {received} of {announced} bytes")
    if expected_size is not None and state.size < expected_size:
        raise _Transient(f"the transfer stopped at byte {state.size} of {expected_size}")


def _local_source(url: str) -> Path:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() == "file":
        if parts.netloc not in ("", "localhost"):
            raise DownloadError(f"{url}: file:// URLs naming another host are not supported")
        return Path(urllib.request.url2pathname(parts.path))
    return Path(url).expanduser()


def _copy_local(
    source: Path, part: Path, expected: str, expected_size: int | None, meter: _Progress
) -> _PartHash:
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file to copy from")
    size = source.stat().st_size
    if expected_size is not None and size != expected_size:
        raise ChecksumError(
            source,
            expected,
            None,
            f"{source} has {size} bytes, not the expected {expected_size}; wrong file?",
        )
    state = _PartHash(part)
    state.reset()
    meter.start(0, size)
    with open(source, "rb") as src, open(part, "ab") as dst:
        for block in iter(lambda: src.read(CHUNK_BYTES), b""):
            dst.write(block)
            state.update(block)
            meter.update(state.size)
    return state


def _check_member_name(name: str, archive: Path) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if not name or path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise ValueError(f"{archive}: refusing to extract the unsafe member name {name!r}")


def _describe(err: BaseException) -> str:
    reason = getattr(err, "reason", None)
    text = f"{type(err).__name__}: {reason if reason is not None else err}"
    return " ".join(text.split())


def _stderr(message: str) -> None:
    print(f"eqlv2 download: {message}", file=sys.stderr, flush=True)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
