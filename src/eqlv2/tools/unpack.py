"""``eqlv2 unpack``: extract a zip archive into a folder, refusing unsafe member names.

Files appear in the destination only once fully extracted (see :func:`eqlv2.data.unpack_zip`).
"""

from __future__ import annotations

import argparse

from eqlv2.data import unpack_zip


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "unpack",
        help="extract a zip archive (e.g. an LVIS annotation archive)",
        description=(
            "Example:\n  eqlv2 unpack resources/downloads/lvis_v1_val.json.zip "
            "--dest resources/lvis_v1/annotations"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("--dest", required=True, metavar="DIR")
    p.add_argument("--member", action="append", dest="members", metavar="NAME", help="only these members")
    p.set_defaults(func=command, verb="unpack")


def command(args: argparse.Namespace) -> None:
    for path in unpack_zip(args.archive, args.dest, args.members):
        print(path)
