"""tf.train.Example protos and TFRecord framing, written without TensorFlow.

Conversion workers must stay small (no 500 MB TensorFlow import per process),
so the two formats are written here by hand.  Both are tiny:

  TFRecord:  uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)
  Example:   features(1) -> map<string, Feature>; Feature is one of
             bytes_list(1), float_list(2, packed), int64_list(3, packed)

Map entries are written in sorted key order, so equal examples give equal bytes.
"""
from __future__ import annotations

import struct

import crc32c as _crc32c

_MASK_DELTA = 0xA282EAD8


def masked_crc(data: bytes) -> int:
    crc = _crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _slow_varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF  # int64 is written as its two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [_slow_varint(v) for v in range(1 << 14)]  # tags, lengths and labels: one lookup


def _varint(value: int) -> bytes:
    return _SMALL[value] if 0 <= value < 16384 else _slow_varint(value)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def bytes_feature(values) -> bytes:
    if isinstance(values, (bytes, str)):
        values = [values]
    items = [_field(1, v.encode() if isinstance(v, str) else bytes(v)) for v in values]
    return _field(1, b"".join(items))


def float_feature(values) -> bytes:
    if isinstance(values, (int, float)):
        values = [values]
    values = list(values)
    inner = _field(1, struct.pack(f"<{len(values)}f", *values)) if values else b""
    return _field(2, inner)


def int64_feature(values) -> bytes:
    if isinstance(values, int):
        values = [values]
    values = list(values)
    inner = _field(1, b"".join(_varint(v) for v in values)) if values else b""
    return _field(3, inner)


def _wrap(number: int, chunks: list) -> list:
    """A length-delimited field around chunks, without copying them."""
    return [_varint((number << 3) | 2) + _varint(sum(map(len, chunks)))] + chunks


def image_feature(data: bytes) -> list:
    """bytes_feature(data) as chunks: the (large) image bytes are never copied."""
    return _wrap(1, _wrap(1, [data]))


_KEYS: dict[str, bytes] = {}


def example_chunks(features: dict) -> list[bytes]:
    """A tf.train.Example as a list of byte chunks (join them for the proto).

    Values are encoded Features (bytes) or chunk lists (image_feature).  Small
    chunks are coalesced; large ones are passed through, so a 100 KB image is
    copied only by the final write.
    """
    entries = []
    for k in sorted(features):
        feat = features[k]
        key = _KEYS.get(k) or _KEYS.setdefault(k, _field(1, k.encode()))
        entries += _wrap(1, [key] + _wrap(2, feat if isinstance(feat, list) else [feat]))
    out, small = [], []
    for chunk in _wrap(1, entries):
        if len(chunk) >= 4096:
            if small:
                out.append(b"".join(small))
                small = []
            out.append(chunk)
        else:
            small.append(chunk)
    if small:
        out.append(b"".join(small))
    return out


def example(features: dict) -> bytes:
    """Serialize a tf.train.Example from {key: encoded Feature} (see *_feature)."""
    return b"".join(example_chunks(features))


def frame_chunks(chunks: list) -> list[bytes]:
    """One TFRecord around the chunks of a payload: header, chunks, data checksum."""
    length = struct.pack("<Q", sum(map(len, chunks)))
    crc = 0
    for chunk in chunks:
        crc = _crc32c.crc32c(chunk, crc)
    masked = (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF
    return [length + struct.pack("<I", masked_crc(length)), *chunks, struct.pack("<I", masked)]


def frame(data: bytes) -> bytes:
    """One TFRecord: header, data and both checksums."""
    return b"".join(frame_chunks([data]))


def iter_records(path):
    """Yield the payload of each record of a TFRecord file, checking both CRCs."""
    with open(path, "rb") as f:
        while True:
            head = f.read(12)
            if not head:
                return
            if len(head) < 12:
                raise ValueError(f"{path}: truncated record header")
            (length,) = struct.unpack("<Q", head[:8])
            if struct.unpack("<I", head[8:])[0] != masked_crc(head[:8]):
                raise ValueError(f"{path}: bad length checksum")
            data = f.read(length)
            tail = f.read(4)
            if len(data) < length or len(tail) < 4:
                raise ValueError(f"{path}: truncated record")
            if struct.unpack("<I", tail)[0] != masked_crc(data):
                raise ValueError(f"{path}: bad data checksum")
            yield data
