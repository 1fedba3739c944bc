"""Which GPU architectures a CUDA binary carries, and whether one of them runs on a given card.

A compiled CUDA extension (mmcv's ``_ext*.so``) keeps its device code in the ELF section
``.nv_fatbin``: one or more fat-binary containers (magic ``0xBA55ED50``), each a list of entries
that are either machine code for one architecture (an ELF "cubin", named ``sm_XY``) or PTX for a
virtual architecture (``compute_XY``), which the driver compiles for the card at load time.  Reading
that section is what ``cuobjdump --list-elf --list-ptx`` does; doing it here needs no CUDA toolkit,
so ``eqlv2 doctor`` and ``make cuda-check`` can tell what an install was built for on any machine.

The layout, as nvcc 13.0 writes it (checked against its output, see ``tests/test_cuda_arch.py``):

* container header, 16 bytes: ``u32 magic, u16 version, u16 header_size, u64 entries_size``;
* entry header (64, 80 or 112 bytes), followed by its payload: ``u16 kind`` (1 PTX, 2 ELF) at 0,
  ``u32 header_size`` at 4, ``u64 payload_size`` (padded to 8) at 8, ``u32 arch`` (``10*major +
  minor``) at 28, ``u64 flags`` at 40, in which bit 20 marks an arch-specific target (``sm_90a``)
  and bit 21 a family-specific one (``sm_100f``).
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

FATBIN_SECTION = ".nv_fatbin"
FATBIN_MAGIC = 0xBA55ED50
KIND_PTX = 1
KIND_ELF = 2
FLAG_ARCH_SPECIFIC = 1 << 20  # sm_90a: only this exact compute capability
FLAG_FAMILY_SPECIFIC = 1 << 21  # sm_100f: this major version, this minor or a later one

_CONTAINER = struct.Struct("<IHHQ")
_ENTRY_MIN = 48  # the fields read below lie in an entry header's first 48 bytes
_ARCH = re.compile(r"(sm|compute)_(\d+)([af]?)")


def elf_section(path: str | Path, name: str) -> bytes | None:
    """The contents of section ``name`` of a 64-bit little-endian ELF file, or None if it has none.

    Reads the section headers directly (no ``readelf``/``pyelftools`` needed), and of the file only them,
    the section names and the section itself: a CUDA build of mmcv's _ext is hundreds of MB.  Read with
    ``pread`` rather than mapped: ``eqlv2 doctor`` crashed (SIGSEGV) on a GPU machine under gVisor, and a
    mapping of the loaded library was one of the suspects.  A file that is not such an ELF file raises
    ValueError naming it.
    """
    path = Path(path)
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size

        def read(offset: int, count: int, what: str) -> bytes:
            if offset + count > size:
                raise ValueError(f"{path}: {what} lies outside the file (truncated?)")
            return os.pread(file.fileno(), count, offset)

        return _section(path, read, name)


def _section(path: Path, read, name: str) -> bytes | None:
    try:
        ident = read(0, 64, "the ELF header")
    except ValueError:
        raise ValueError(f"{path}: not a 64-bit little-endian ELF file") from None
    if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
        raise ValueError(f"{path}: not a 64-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<Q", ident, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ident, 0x3A)

    def header(index: int) -> tuple[int, int, int, int]:  # name offset, link, file offset, size
        entry = read(shoff + index * shentsize, 64, f"section header {index}")
        sh_name, _, _, _, offset, size, link = struct.unpack_from("<IIQQQQI", entry)
        return sh_name, link, offset, size

    if shoff == 0:
        return None
    if shnum == 0:  # more than 0xff00 sections: the count is in section 0's size field
        shnum = header(0)[3]
    if shstrndx == 0xFFFF:  # likewise the string table's index, in section 0's link field
        shstrndx = header(0)[1]
    _, _, names_offset, names_size = header(shstrndx)
    names = read(names_offset, names_size, "the section names")
    wanted = name.encode()
    for index in range(shnum):
        sh_name, _, offset, size = header(index)
        end = names.find(b"\0", sh_name)
        if names[sh_name:end] == wanted:
            return read(offset, size, f"section {name}")
    return None


def parse_fatbin(data: bytes) -> list[str]:
    """The architecture of every entry in a ``.nv_fatbin`` section, in order (``sm_80``, ``compute_90``).

    Containers follow each other, possibly separated by zero padding; anything else is malformed and
    raises ValueError rather than being skipped, so a result is never silently partial.
    """
    found: list[str] = []
    offset = 0
    while offset < len(data):
        if not any(data[offset : offset + 8]):  # alignment padding (a container starts with its magic)
            offset += 8
            continue
        if offset + _CONTAINER.size > len(data):
            raise ValueError(f"the fat-binary container at offset {offset} is truncated")
        magic, _, header_size, entries_size = _CONTAINER.unpack_from(data, offset)
        if magic != FATBIN_MAGIC:
            raise ValueError(f"no fat-binary container at offset {offset} (magic {magic:#x})")
        end = offset + header_size + entries_size
        if end > len(data):
            raise ValueError(f"the fat-binary container at offset {offset} is truncated")
        entry = offset + header_size
        while entry < end:
            if entry + _ENTRY_MIN > end:
                raise ValueError(f"a fat-binary entry at offset {entry} is truncated")
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            (arch,) = struct.unpack_from("<I", data, entry + 28)
            (flags,) = struct.unpack_from("<Q", data, entry + 40)
            if entry_header < _ENTRY_MIN:
                raise ValueError(f"a fat-binary entry at offset {entry} has a {entry_header}-byte header")
            if kind in (KIND_PTX, KIND_ELF):
                prefix = "sm" if kind == KIND_ELF else "compute"
                suffix = "a" if flags & FLAG_ARCH_SPECIFIC else "f" if flags & FLAG_FAMILY_SPECIFIC else ""
                found.append(f"{prefix}_{arch}{suffix}")
            entry += entry_header + payload
        offset = end
    return found


def fatbin_architectures(path: str | Path) -> list[str]:
    """The distinct architectures compiled into ``path``'s ``.nv_fatbin``, sorted: e.g.
    ``['sm_80', 'sm_90', 'compute_90']``.  Empty for a file without device code (a CPU-only build)."""
    section = elf_section(path, FATBIN_SECTION)
    if section is None:
        return []
    try:
        names = parse_fatbin(section)
    except ValueError as err:
        raise ValueError(f"{path}: {FATBIN_SECTION}: {err}") from None
    return sorted(set(names), key=lambda name: (capability_of(name), name.startswith("compute"), name))


def _split(arch: str) -> tuple[str, tuple[int, int], str]:
    """``compute_120f`` -> ("compute", (12, 0), "f"): the last digit is the minor version."""
    match = _ARCH.fullmatch(arch)
    if match is None:
        raise ValueError(f"not a CUDA architecture name: {arch!r} (expected e.g. sm_80, sm_90a, compute_90)")
    kind, number, suffix = match.groups()
    return kind, (int(number) // 10, int(number) % 10), suffix


def capability_of(arch: str) -> tuple[int, int]:
    """The compute capability an architecture is built for: ``sm_86`` -> (8, 6)."""
    return _split(arch)[1]


def runs_on(arch: str, capability: tuple[int, int]) -> bool:
    """Whether code compiled for ``arch`` can run on a card of compute ``capability``.

    CUDA's compatibility rules:

    * machine code ``sm_XY`` runs on cards X.Z with Z >= Y: the same major version only (``sm_80``
      runs on 8.6 but not on 9.0);
    * PTX ``compute_XY`` is compiled by the driver for any card of capability >= X.Y, later majors
      included (``compute_90`` runs on 10.0 and 12.0);
    * an arch-specific target (``sm_90a``, ``compute_90a``) runs on exactly X.Y;
    * a family-specific target (``sm_100f``, ``compute_100f``) on X.Z with Z >= Y, machine code or PTX.

    (The driver must also be new enough for the PTX's ISA version; that is not visible here.)
    """
    kind, built, suffix = _split(arch)
    card = tuple(capability)
    if suffix == "a":
        return card == built
    if kind == "sm" or suffix == "f":
        return card[0] == built[0] and card[1] >= built[1]
    return card >= built
