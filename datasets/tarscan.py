"""A tar-header scanner: the regular files of a tar, read with seeks, nothing extracted.

Python's tarfile costs ~50 us and several reads per member; ImageNet has 1.3M
members.  The format is simple: 512-byte headers, data padded to 512 bytes,
two zero blocks at the end.  ustar, GNU long names and pax paths are handled.
A 140 GB train tar is indexed by reading its ~1.3M headers.

Every structural problem is a UserError naming the archive and what was expected.
"""
from __future__ import annotations

from typing import NamedTuple

from zoobuild.errors import UserError

BLOCK = 512



class Member(NamedTuple):
    name: str
    offset: int   # of the data, relative to the start of the archive
    size: int
    type: bytes


def _octal(field: bytes, where: str) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256 for sizes >= 8 GiB
        n = int.from_bytes(field[1:], "big")
        return -n if field[:1] == b"\xff" else n
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise UserError(f"{where}: not a tar (bad header number {text[:12]!r}); "
                        f"expected a tar archive") from None


def _header(block: bytes, where: str, at: int) -> tuple[str, int, bytes]:
    stored = _octal(block[148:156], where)
    unsigned = sum(block[:148]) + 256 + sum(block[156:])
    if stored != unsigned and stored != unsigned - 256 * sum(b >= 128 for b in block[:148] + block[156:]):
        what = "not a tar" if at == 0 else "corrupt tar"
        raise UserError(f"{where}: {what} (bad header checksum at byte {at}); expected a tar archive")
    name = block[:100].split(b"\0", 1)[0]
    if block[257:262] == b"ustar" and block[345:346] != b"\0" and block[156:157] not in (b"L", b"K"):
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "surrogateescape"), _octal(block[124:136], where), block[156:157]


def _pax_path(data: bytes) -> str | None:
    path = None
    i = 0
    while i < len(data):
        sp = data.index(b" ", i)
        length = int(data[i:sp])
        key, _, value = data[sp + 1:i + length - 1].partition(b"=")
        if key == b"path":
            path = value.decode("utf-8", "surrogateescape")
        i += length
    return path



_NAME_KINDS = (b"L", b"x", b"K", b"g")   # GNU long name/link, pax header, pax global header
_FILE_KINDS = (b"0", b"\0", b"7")        # regular files


def _next_name(kind: bytes, payload: bytes, long_name):
    """The name a GNU long-name ('L') or pax ('x') header gives the next member (others: as is)."""
    if kind == b"L":
        return payload.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    if kind == b"x":
        return _pax_path(payload) or long_name
    return long_name


def _member_name(name: str, long_name):
    """(this member's name, the pending long name after it): a pending long name wins once."""
    return (name, None) if long_name is None else (long_name, None)


def scan_tar(read, limit: int, where: str):
    """Yield the regular files of the tar that read(offset, n) gives, `limit` bytes long.

    Raises UserError for a file that is not a tar, a member past the end, and a
    missing end-of-archive marker (a tar cut at a member boundary).
    """
    off = 0
    long_name = None
    empty = True
    while True:
        block = read(off, BLOCK) if off + BLOCK <= limit else b""
        if len(block) < BLOCK:
            if empty and off == 0:
                raise UserError(f"{where}: not a tar (only {limit} bytes); expected a tar archive")
            raise UserError(f"{where}: truncated tar (no end-of-archive marker after byte {off}; "
                            f"expected a complete tar)")
        if not any(block):
            nxt = read(off + BLOCK, BLOCK) if off + 2 * BLOCK <= limit else b""
            if len(nxt) == BLOCK and not any(nxt):
                return
            raise UserError(f"{where}: truncated tar (incomplete end-of-archive marker at byte {off})")
        empty = False
        name, size, kind = _header(block, where, off)
        data = off + BLOCK
        if size < 0 or data + size > limit:
            raise UserError(f"{where}: truncated tar (member {name} needs bytes up to "
                            f"{data + size}, the archive has {limit})")
        off = data + (size + BLOCK - 1) // BLOCK * BLOCK
        if kind in _NAME_KINDS:  # the next member's long name / pax attributes
            long_name = _next_name(kind, read(data, size), long_name)
            continue
        name, long_name = _member_name(name, long_name)
        if kind in _FILE_KINDS:
            yield Member(name, data, size, kind)


def scan_tar_stream(f, where: str):
    """Yield (name, data) of the regular files of a tar read sequentially from f."""
    long_name = None
    at = 0
    while True:
        block = f.read(BLOCK)
        if len(block) < BLOCK or not any(block):
            if at == 0 and len(block) < BLOCK:
                raise UserError(f"{where}: not a tar (empty); expected a tar archive")
            return
        name, size, kind = _header(block, where, at)
        padded = (size + BLOCK - 1) // BLOCK * BLOCK
        data = f.read(padded)
        if len(data) < padded:
            raise UserError(f"{where}: truncated archive at {name}")
        at += BLOCK + padded
        data = data[:size]
        if kind in _NAME_KINDS:
            long_name = _next_name(kind, data, long_name)
            continue
        name, long_name = _member_name(name, long_name)
        if kind in _FILE_KINDS:
            yield name, data
