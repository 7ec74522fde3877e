"""Reopen an .h5 file whose writer was killed (SIGKILL, power loss) while it had it open.

Files in HDF5's newest format (superblock version 3, written with ``libver="latest"`` by
earlier releases of this package) carry "open for write" flags in their superblock; a
writer that dies leaves them set and HDF5 then refuses every later open ("file is already
open for write ... use h5clear"). The package now writes the 1.8 format (superblock 0/2,
no such flags, still read by every HDF5 >= 1.8), and :func:`clear_write_flags` does what
``h5clear -s`` does for the older files: reset the flags and rewrite the superblock checksum
(Jenkins' lookup3, as HDF5). The entries' own ``complete`` markers still decide what is kept.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MASK = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle`` (byte-wise), HDF5's metadata checksum."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _MASK
    i = 0
    while length > 12:
        a = (a + int.from_bytes(data[i:i + 4], "little")) & _MASK
        b = (b + int.from_bytes(data[i + 4:i + 8], "little")) & _MASK
        c = (c + int.from_bytes(data[i + 8:i + 12], "little")) & _MASK
        a = (a - c) & _MASK; a ^= _rot(c, 4); c = (c + b) & _MASK  # noqa: E702
        b = (b - a) & _MASK; b ^= _rot(a, 6); a = (a + c) & _MASK  # noqa: E702
        c = (c - b) & _MASK; c ^= _rot(b, 8); b = (b + a) & _MASK  # noqa: E702
        a = (a - c) & _MASK; a ^= _rot(c, 16); c = (c + b) & _MASK  # noqa: E702
        b = (b - a) & _MASK; b ^= _rot(a, 19); a = (a + c) & _MASK  # noqa: E702
        c = (c - b) & _MASK; c ^= _rot(b, 4); b = (b + a) & _MASK  # noqa: E702
        i += 12
        length -= 12
    if length == 0:
        return c
    tail = data[i:i + length] + bytes(12 - length)
    a = (a + int.from_bytes(tail[0:4], "little")) & _MASK
    b = (b + int.from_bytes(tail[4:8], "little")) & _MASK
    c = (c + int.from_bytes(tail[8:12], "little")) & _MASK
    c ^= b; c = (c - _rot(b, 14)) & _MASK  # noqa: E702
    a ^= c; a = (a - _rot(c, 11)) & _MASK  # noqa: E702
    b ^= a; b = (b - _rot(a, 25)) & _MASK  # noqa: E702
    c ^= b; c = (c - _rot(b, 16)) & _MASK  # noqa: E702
    a ^= c; a = (a - _rot(c, 4)) & _MASK  # noqa: E702
    b ^= a; b = (b - _rot(a, 14)) & _MASK  # noqa: E702
    c ^= b; c = (c - _rot(b, 24)) & _MASK  # noqa: E702
    return c


def _superblock_offset(f) -> int | None:
    """HDF5 looks for the signature at 0, 512, 1024, 2048, ... (after a user block)."""
    size = os.fstat(f.fileno()).st_size
    offset = 0
    while offset + len(SIGNATURE) <= size:
        f.seek(offset)
        if f.read(len(SIGNATURE)) == SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    return None


def clear_write_flags(path: str | os.PathLike) -> bool:
    """Reset the "open for write" flags of a version 2/3 superblock; True if it changed the file."""
    with open(Path(path), "r+b") as f:
        start = _superblock_offset(f)
        if start is None:
            return False
        f.seek(start + 8)
        version, size_offsets = struct.unpack("<BB", f.read(2))
        if version < 2:
            return False  # versions 0 and 1 keep no such flags
        f.seek(start)
        n = 12 + 4 * size_offsets  # signature, versions and sizes, flags, four addresses
        block = bytearray(f.read(n + 4))
        if block[11] == 0:
            return False
        stored = int.from_bytes(block[n:n + 4], "little")
        if lookup3(bytes(block[:n])) != stored:
            return False  # not a superblock we understand: leave it alone
        block[11] = 0
        block[n:n + 4] = lookup3(bytes(block[:n])).to_bytes(4, "little")
        f.seek(start)
        f.write(block)
        f.flush()
        os.fsync(f.fileno())
    return True
