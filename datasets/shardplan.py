"""Which image goes into which shard: the shard counts and the plan, pure functions of the index.

Each image goes to a shard by the order of sha256(seed, split, file name);
shard i holds the i-th contiguous slice of that order.  So the first shard
holds many classes, and any shard can be written alone, on any machine, and
comes out identical.  Each job carries a digest of everything its shard's bytes
are a function of; a finished shard is recognised by it.

Shard counts default to `auto`: slim's 1024/128 for the full ILSVRC2012 splits,
otherwise shards of at most MAX_SHARD_BYTES (about 100-150 MB once there are
three or more), at least one, and never more shards than images, so no shard is
planned empty.  An explicit count wins over the rule, and is refused when the
split has fewer images than shards.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from datasets import layout
from zoobuild.errors import UserError

FORMAT_VERSION = 1
AUTO = "auto"
MAX_SHARD_BYTES = 150_000_000
MAX_SHARDS = 99999  # five digits in slim's shard names


@dataclass
class ShardJob:
    split: str
    index: int
    num_shards: int
    entries: list          # ilsvrc.Entry, in the order they are written
    digest: str            # what the shard's content is a function of
    data_dir: str
    out_dir: str
    texts: dict            # synset -> class text for the synsets in this shard
    strict: bool
    quality: int

    @property
    def name(self) -> str:
        return layout.shard_name(self.split, self.index, self.num_shards)


# ---------------------------------------------------------------- shard counts

def check_shard_count(name: str, value) -> int | str:
    """`auto` or a count 1..99999 (an int or its text); anything else is a UserError."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return AUTO
        value = int(text) if text.isdigit() else text
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SHARDS:
        raise UserError(f"{name}={value!r}: expected {AUTO} or an integer from 1 to {MAX_SHARDS}")
    return value


def auto_shard_count(split: str, num_images: int, total_bytes: int) -> int:
    """slim's count for a full ILSVRC2012 split, else shards of <= MAX_SHARD_BYTES; 1..num_images."""
    if num_images == layout.ILSVRC2012_SIZES.get(split):
        return layout.SLIM_SHARDS[split]
    by_size = -(-int(total_bytes) // MAX_SHARD_BYTES)  # ceil
    return max(1, min(by_size, num_images, MAX_SHARDS))


def resolve_shard_counts(index, requested: dict) -> dict:
    """{split: count}: `auto` resolved from the index's image counts and bytes, explicit counts checked."""
    counts = {}
    for split in layout.SPLITS:
        name = f"{split}_shards"
        value = check_shard_count(name, requested[split])
        entries = index.entries[split]
        if value == AUTO:
            value = auto_shard_count(split, len(entries), sum(e.size for e in entries))
        elif value > len(entries):
            raise UserError(f"{name}={value}: more shards than the {len(entries)} {split} images "
                            f"in the source; expected at most {len(entries)} (or {AUTO}), "
                            f"so that no shard is empty")
        counts[split] = value
    return counts


# ---------------------------------------------------------------- the plan

def _order_key(seed: int, split: str, filename: str) -> bytes:
    return hashlib.sha256(f"{seed}\0{split}\0{filename}".encode()).digest()


def plan(index, counts: dict, seed: int, data_dir, out_dir, strict: bool, quality: int) -> list[ShardJob]:
    """Every shard of both splits, train then validation; counts are resolved ({split: int})."""
    jobs = []
    for split in layout.SPLITS:
        num = counts[split]
        entries = sorted(index.entries[split], key=lambda e: _order_key(seed, split, e.filename))
        n = len(entries)
        for i in range(num):
            chunk = entries[i * n // num:(i + 1) * n // num]
            texts = {e.synset: index.texts.get(e.synset, e.synset) for e in chunk}
            body = {"version": FORMAT_VERSION, "split": split, "index": i, "num_shards": num,
                    "quality": quality, "texts": sorted(texts.items()),
                    "entries": [[e.filename, e.source, e.offset, e.size, e.label, e.synset,
                                 e.boxes, e.box_size] for e in chunk]}
            digest = hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()
            jobs.append(ShardJob(split, i, num, chunk, digest, str(data_dir), str(out_dir),
                                 texts, strict, quality))
    return jobs


def parse_shard_range(value, total: int | None) -> tuple[int, int | None]:
    """(lo, hi) over the shard list [train 0..T-1, validation 0..V-1]; accepts 'lo:hi' or 'lo-hi'.

    total None (auto counts, not resolved before the data is indexed) checks the
    form only; the conversion checks the range against the resolved total.
    """
    if value is None or value == "":
        return 0, total
    try:
        if isinstance(value, str):
            lo, hi = re.split(r"[:-]", value.strip())
            lo, hi = int(lo or 0), int(hi) if hi else total
        else:
            lo, hi = (int(v) for v in value)
    except ValueError:
        raise UserError(f"shard_range={value!r}: expected LO:HI, shard numbers over train then "
                        f"validation (0..{total if total is not None else 'T+V'})") from None
    if total is None:
        if not 0 <= lo < (hi if hi is not None else lo + 1):
            raise UserError(f"shard_range={value!r}: expected 0 <= LO < HI")
    elif not 0 <= lo < hi <= total:
        raise UserError(f"shard_range={value!r}: expected 0 <= LO < HI <= {total}")
    return lo, hi
