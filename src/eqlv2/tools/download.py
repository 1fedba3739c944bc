"""``eqlv2 download``: fetch a file of the manifest (or any URL with its sha256), verified and resumable.

The transfer itself is :func:`eqlv2.data.download.download`: it writes ``OUT.part``, resumes it after an
interruption, and renames it to ``OUT`` only once the sha256 matches, so a rule's output is either absent
or verified.  A run with ``OUT`` already present and matching does nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from eqlv2.data import manifest
from eqlv2.data.download import download


def fetch(
    name: str | None,
    out: str | Path | None = None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    retries: int = 3,
    timeout: float = 60,
    progress: bool = True,
    backoff: float = 2.0,
) -> Path:
    """Download manifest entry ``name`` to ``out`` (default: its file name in the current directory).

    With ``name``, ``url`` fetches the entry from another source instead (a mirror, or an existing copy
    as ``file://`` URL or path), still verified against the manifest's sha256.  Without ``name``,
    ``url``, ``sha256`` and ``out`` are all required.  An entry without a known sha256 is refused unless
    ``sha256`` is given.
    """
    if name is not None:
        entry = manifest.get_entry(name)
        if entry.sha256 is None and sha256 is None:
            raise ValueError(
                f"manifest entry {name} has no sha256 ({entry.hash_source or 'none known'}): refusing "
                "to download it unverified; pass --sha256 HEX explicitly once you have checked the hash"
            )
        if sha256 is not None and entry.sha256 is not None and sha256.strip().lower() != entry.sha256:
            raise ValueError(
                f"--sha256 {sha256} disagrees with the manifest's {entry.sha256} for {name}; "
                "use --url URL --sha256 HEX --out PATH without NAME to fetch a different file"
            )
        url = url or entry.url
        sha256 = sha256 or entry.sha256
        size = entry.size if size is None else size
        out = entry.name if out is None else out
    else:
        missing = [
            flag for flag, value in (("--url", url), ("--sha256", sha256), ("--out", out)) if not value
        ]
        if missing:
            raise ValueError(
                "give a manifest NAME (see --list), or --url, --sha256 and --out "
                f"(missing: {', '.join(missing)})"
            )
    return download(
        url,
        out,
        sha256,
        expected_size=size,
        retries=retries,
        timeout=timeout,
        progress=progress,
        backoff=backoff,
    )


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "download",
        help="download a dataset file or weights, verified by sha256 and resumable",
        description=(
            "Fetch NAME from the manifest (--list shows it) or --url URL with its --sha256, into OUT.  "
            "The bytes go to OUT.part first and are renamed to OUT only when their sha256 matches; an "
            "interrupted transfer is resumed (HTTP Range) by the next attempt or the next run.  OUT already "
            "there and matching: nothing to do; there and not matching: an error, never overwritten.  "
            "--url also takes file:// URLs and paths, to use an existing copy (copied and verified).\n\n"
            "Examples:\n"
            "  eqlv2 download --list\n"
            "  eqlv2 download lvis_v1_val.json.zip --out resources/lvis_v1/lvis_v1_val.json.zip\n"
            "  eqlv2 download val2017.zip --url /datasets/coco/val2017.zip --out resources/coco/val2017.zip\n"
            "  eqlv2 download --url https://example.org/f.bin --sha256 HEX --size 1234 --out data/f.bin"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="a manifest entry (see --list)")
    p.add_argument("--list", action="store_true", help="print the manifest and exit")
    p.add_argument("--url", help="source URL (http, https, file://) or local path; with NAME: another source")
    p.add_argument("--sha256", metavar="HEX", help="expected sha256 (required with --url alone)")
    p.add_argument("--size", type=int, metavar="BYTES", help="expected size in bytes (optional)")
    p.add_argument("--out", metavar="PATH", help="output file (default with NAME: ./NAME)")
    p.add_argument("--retries", type=int, default=3, help="retries of transient failures (default: 3)")
    p.add_argument(
        "--timeout", type=float, default=60, metavar="SECONDS", help="socket timeout (default: 60)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines (retries are still reported)")
    p.set_defaults(func=command, verb="download")


def command(args: argparse.Namespace) -> None:
    if args.list:
        print(manifest.format_manifest())
        return
    print(
        fetch(
            args.name,
            args.out,
            url=args.url,
            sha256=args.sha256,
            size=args.size,
            retries=args.retries,
            timeout=args.timeout,
            progress=not args.quiet,
        )
    )
