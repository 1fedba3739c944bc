"""Reading the architectures out of a CUDA binary, and CUDA's rule for which of them run on a card.

``data/fatbin_sm80_sm90a_sm100f_compute90.so`` is a real nvcc 13.0.88 build (stripped, 31 KB) of

    __global__ void add_one(float *x, int n) { ... }
    void launch(float *x, int n) { add_one<<<(n + 255) / 256, 256>>>(x, n); }

made with ``nvcc -shared -cudart shared -Xcompiler -fPIC -gencode arch=compute_80,code=sm_80
-gencode arch=compute_90a,code=sm_90a -gencode arch=compute_100f,code=sm_100f
-gencode arch=compute_90,code=compute_90``; nvcc wrote its device code as two fat-binary containers.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

from eqlv2.cuda_arch import (
    FATBIN_MAGIC,
    FLAG_ARCH_SPECIFIC,
    KIND_ELF,
    KIND_PTX,
    capability_of,
    elf_section,
    fatbin_architectures,
    parse_fatbin,
    runs_on,
)

FIXTURE = Path(__file__).parent / "data" / "fatbin_sm80_sm90a_sm100f_compute90.so"


def _entry(kind: int, arch: int, payload: bytes, flags: int = 0, header: int = 64) -> bytes:
    padded = payload + b"\0" * (-len(payload) % 8)
    fields = struct.pack("<HHIQIIHHIIIQ", kind, 0x101, header, len(padded), len(payload), 0, 0, 0, arch,
                         0, 0, flags)  # fmt: skip
    return fields + b"\0" * (header - len(fields)) + padded


def _container(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return struct.pack("<IHHQ", FATBIN_MAGIC, 1, 16, len(body)) + body


def test_a_real_nvcc_build_lists_its_machine_code_and_ptx():
    assert fatbin_architectures(FIXTURE) == ["sm_80", "sm_90a", "compute_90", "sm_100f"]


def test_a_binary_without_device_code_has_no_architectures():
    assert elf_section(sys.executable, ".nv_fatbin") is None
    assert fatbin_architectures(sys.executable) == []


def test_a_file_that_is_not_elf_is_refused_naming_it(tmp_path):
    path = tmp_path / "_ext.so"
    path.write_bytes(b"#!/bin/sh\n")
    with pytest.raises(ValueError, match="_ext.so: not a 64-bit little-endian ELF file"):
        fatbin_architectures(path)


def test_a_truncated_library_is_refused_naming_what_is_missing(tmp_path):
    path = tmp_path / "_ext.so"
    whole = Path(sys.executable).resolve().read_bytes()
    path.write_bytes(whole[: len(whole) - 32])  # a copy cut short: section headers come last
    with pytest.raises(ValueError, match=r"_ext.so: section header \d+ lies outside the file \(truncated"):
        fatbin_architectures(path)


def test_containers_with_padding_between_them_are_all_read():
    section = (
        _container(_entry(KIND_ELF, 75, b"x" * 13), _entry(KIND_PTX, 75, b"ptx", header=80))
        + b"\0" * 16
        + _container(_entry(KIND_ELF, 90, b"y" * 8, flags=FLAG_ARCH_SPECIFIC), _entry(7, 90, b"other kind"))
    )
    assert parse_fatbin(section) == ["sm_75", "compute_75", "sm_90a"]


@pytest.mark.parametrize(
    ("section", "message"),
    [(b"\x01" * 16, "no fat-binary container at offset 0"),
     (_container(_entry(KIND_ELF, 80, b"abc"))[:-8], "container at offset 0 is truncated"),
     (struct.pack("<IHHQ", FATBIN_MAGIC, 1, 16, 8) + b"\x02" + b"\0" * 7, "entry at offset 16 is truncated")],
)  # fmt: skip
def test_a_malformed_section_is_an_error_not_a_partial_list(section, message):
    with pytest.raises(ValueError, match=message):
        parse_fatbin(section)


@pytest.mark.parametrize(
    ("arch", "card", "runs"),
    [("sm_80", (8, 0), True), ("sm_80", (8, 6), True),    # same major, later minor
     ("sm_86", (8, 0), False), ("sm_80", (9, 0), False),  # earlier minor; another major
     ("compute_80", (9, 0), True), ("compute_90", (10, 0), True), ("compute_90", (12, 0), True),
     ("compute_90", (8, 9), False),                       # PTX never runs on an older card
     ("sm_90a", (9, 0), True), ("compute_90a", (10, 0), False), ("sm_100a", (10, 3), False),
     ("sm_100f", (10, 3), True), ("compute_100f", (10, 3), True), ("sm_100f", (12, 0), False),
     ("compute_100f", (12, 0), False)],
)  # fmt: skip
def test_cuda_compatibility_rule(arch, card, runs):
    assert runs_on(arch, card) is runs


def test_architecture_names_map_to_compute_capabilities():
    assert capability_of("sm_86") == (8, 6)
    assert capability_of("compute_120f") == (12, 0)
    with pytest.raises(ValueError, match="not a CUDA architecture name: '9.0'"):
        runs_on("9.0", (9, 0))
