"""What an image file really is, read from its first bytes, without decoding it.

ImageNet has PNGs saved as `.JPEG`, CMYK JPEGs and a few broken files.  Lists of
known file names (what slim and tensorflow-datasets use) miss any other copy of
the data set; the bytes do not lie.  `sniff` parses JPEG markers (SOF gives
size and component count, Adobe APP14 the colour transform) and the PNG IHDR
chunk, and says whether the bytes can be stored as they are.  Only the rare
files it cannot vouch for go through `normalize`, which decodes with Pillow.
"""
from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# SOF markers that carry frame size; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# Huffman-coded 8-bit frames every libjpeg build decodes (baseline, extended, progressive).
_PLAIN_SOF = {0xC0, 0xC1, 0xC2}
_STANDALONE = {0x01, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8}
_TAIL_SLACK = 64  # bytes of padding tolerated after EOI before we ask the decoder

KEEP, REENCODE, VERIFY, BAD = "keep", "reencode", "verify", "bad"


@dataclass(frozen=True)
class ImageInfo:
    kind: str            # 'jpeg', 'png', 'gif', 'bmp', 'webp', 'tiff' or 'unknown'
    width: int
    height: int
    channels: int        # components of the stored image (1 gray, 3 colour, 4 CMYK/YCCK)
    action: str          # KEEP: store as is; REENCODE: decode and write an RGB JPEG;
                         # VERIFY: decode to find out; BAD: cannot be an image
    reason: str = ""     # why not KEEP, for the conversion report


def _kind(data: bytes) -> str:
    if data[:2] == b"\xff\xd8":
        return "jpeg"
    if data[:8] == PNG_MAGIC:
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return "unknown"


def _jpeg(data: bytes) -> ImageInfo:
    n = len(data)
    i = 2
    width = height = comps = 0
    sof = precision = None
    adobe_transform = None
    while True:
        # markers may be preceded by any number of 0xFF fill bytes
        while i < n and data[i] == 0xFF:
            i += 1
        if i >= n:
            return ImageInfo("jpeg", width, height, comps, BAD, "truncated JPEG header")
        if data[i - 1] != 0xFF:
            return ImageInfo("jpeg", width, height, comps, BAD,
                             f"corrupt JPEG header (no marker at byte {i - 1})")
        marker = data[i]
        i += 1
        if marker in _STANDALONE:
            continue
        if marker == 0xD9:
            return ImageInfo("jpeg", width, height, comps, BAD, "JPEG ends before its image data")
        if i + 2 > n:
            return ImageInfo("jpeg", width, height, comps, BAD, "truncated JPEG header")
        (length,) = struct.unpack_from(">H", data, i)
        if length < 2 or i + length > n:
            return ImageInfo("jpeg", width, height, comps, BAD, "truncated JPEG header")
        seg = data[i + 2:i + length]
        if marker in _SOF:
            if len(seg) < 6:
                return ImageInfo("jpeg", 0, 0, 0, BAD, "corrupt JPEG frame header")
            precision = seg[0]
            height, width = struct.unpack_from(">HH", seg, 1)
            comps = seg[5]
            sof = marker
        elif marker == 0xEE and seg[:5] == b"Adobe" and len(seg) >= 12:
            adobe_transform = seg[11]
        elif marker == 0xDA:  # start of scan: the headers are over
            break
        i += length
    if sof is None:
        return ImageInfo("jpeg", 0, 0, 0, BAD, "JPEG without a frame header")
    if comps == 4:
        what = "YCCK" if adobe_transform == 2 else "CMYK"
        return ImageInfo("jpeg", width, height, comps, REENCODE, f"{what} JPEG")
    if comps not in (1, 3):
        return ImageInfo("jpeg", width, height, comps, REENCODE, f"JPEG with {comps} components")
    if sof not in _PLAIN_SOF or precision != 8:
        return ImageInfo("jpeg", width, height, comps, REENCODE,
                         f"JPEG frame type 0x{sof:02X}, {precision}-bit")
    if width == 0 or height == 0:
        return ImageInfo("jpeg", width, height, comps, VERIFY, "JPEG height given by DNL marker")
    # A complete JPEG ends in EOI; a cut-off one does not.  Decoders disagree on
    # what to do with a missing tail, so such files are decoded to find out.
    tail = data[-_TAIL_SLACK:].rstrip(b"\x00")
    if not tail.endswith(b"\xff\xd9"):
        return ImageInfo("jpeg", width, height, comps, VERIFY, "JPEG without end-of-image marker")
    return ImageInfo("jpeg", width, height, comps, KEEP)


def _png(data: bytes) -> ImageInfo:
    if len(data) < 33 or data[12:16] != b"IHDR":
        return ImageInfo("png", 0, 0, 0, BAD, "truncated PNG header")
    width, height = struct.unpack_from(">II", data, 16)
    color_type = data[25]
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(color_type, 3)
    return ImageInfo("png", width, height, channels, REENCODE, "PNG data in a JPEG file")


def sniff(data: bytes) -> ImageInfo:
    """Classify image bytes from their headers only."""
    kind = _kind(data)
    if kind == "jpeg":
        return _jpeg(data)
    if kind == "png":
        return _png(data)
    if kind == "unknown":
        return ImageInfo(kind, 0, 0, 0, BAD, "not an image (unknown file signature)")
    return ImageInfo(kind, 0, 0, 0, REENCODE, f"{kind.upper()} data in a JPEG file")


def _to_rgb(img):
    from PIL import Image

    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() or 1.0
        img = Image.fromarray((arr * (255.0 / hi)).clip(0, 255).astype("uint8"), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # flatten transparency onto white, as a browser shows it
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return img.convert("RGB")


def normalize(data: bytes, info: ImageInfo, quality: int = 95) -> tuple[bytes | None, ImageInfo, str]:
    """Decode what `sniff` could not vouch for.

    Returns (jpeg_bytes, info of the stored bytes, note).  jpeg_bytes is None when
    the image cannot be decoded; note then says why.  The output is a plain
    8-bit JPEG (RGB, or gray when the source was a decodable gray JPEG).
    """
    from PIL import Image, ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if info.kind == "jpeg" and img.mode in ("L", "RGB"):
                out_img = img.copy()  # a JPEG that only needed checking keeps its colours
            else:
                out_img = _to_rgb(img)
    except Exception as err:  # Pillow raises many types for broken files
        if info.action == BAD:
            return None, info, f"undecodable: {info.reason}"
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        return None, info, "undecodable: " + re.sub(r" <[^>]*>| at 0x[0-9a-fA-F]+", "", msg)
    buf = io.BytesIO()
    out_img.save(buf, format="JPEG", quality=quality)
    out = buf.getvalue()
    note = info.reason or "re-encoded"
    return out, ImageInfo("jpeg", out_img.width, out_img.height, 1 if out_img.mode == "L" else 3, KEEP, note), note
