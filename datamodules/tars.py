"""Shard samples from tar streams: a minimal ustar/pax member reader in place of ``tarfile``'s stream mode.

``tarfile`` spends ~0.08 ms of Python per member (header objects, pax handling, checksum helpers); a sample
is 2-3 members, so reading took ~0.25 ms per sample, 5x what this reader needs. It understands what tar
writers emit for plain files - ustar name + prefix, pax ``path`` records, GNU long names - checks every
header's checksum, and skips everything that is not a regular file. Samples are grouped by key and opened
by webdataset (``url_opener``, ``group_by_keys``), as ``wds.tarfile_to_samples`` does; a damaged or cut-off
shard raises inside the shard, goes to ``handler`` and the stream moves on to the next shard.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator

from webdataset.tariterators import group_by_keys, url_opener

BLOCK = 512
REGULAR = (b"0", b"\0", b"7")  # regular file, old-style regular file, contiguous file
META = re.compile(r"__[^/]*__($|/)")
"""webdataset's ``__*__`` meta members, which are not sample data."""


class TarError(ValueError):
    """A tar header that does not parse or a member cut off before its end."""


def _read(stream, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise TarError(f"tar stream ends inside a member ({len(data)} of {size} bytes)")
    return data


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8")


def _pax_path(records: bytes) -> str | None:
    """The ``path`` of a pax extended header (records ``"<length> <key>=<value>\\n"``), if it has one."""
    path, pos = None, 0
    while pos < len(records):
        length = int(records[pos:records.index(b" ", pos)])
        key, _, value = records[records.index(b" ", pos) + 1:pos + length - 1].partition(b"=")
        if key == b"path":
            path = value.decode("utf-8")
        pos += length
    return path


def tar_members(stream) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every regular file of one tar stream, in order."""
    long_name = None
    while True:
        header = stream.read(BLOCK)
        if not header or header == bytes(BLOCK):  # end of the stream, or the end-of-archive marker
            return
        if len(header) < BLOCK:
            raise TarError("tar stream ends inside a header")
        stored = int(header[148:156].strip(b"\0 "), 8)
        unsigned = sum(header[:148]) + 8 * 32 + sum(header[156:])  # the checksum field counts as spaces
        if stored != unsigned and stored != unsigned - 256 * sum(b > 127 for b in header):  # or signed
            raise TarError("tar header checksum mismatch")
        size = int(header[124:136].strip(b"\0 ") or b"0", 8)
        data = _read(stream, size)
        _read(stream, -size % BLOCK)
        kind = header[156:157]
        if kind == b"x":
            long_name = _pax_path(data) or long_name
        elif kind == b"L":
            long_name = _text(data)
        elif kind in REGULAR:
            prefix = _text(header[345:500])
            name = long_name or (prefix + "/" if prefix else "") + _text(header[:100])
            long_name = None
            yield name, data
        else:
            long_name = None


def member_files(sources: Iterable[dict], handler: Callable[[BaseException], bool]) -> Iterator[dict]:
    """Opened shards (``url_opener`` output) -> ``{fname, data, __url__}`` per member, ``{}`` after each
    shard (so ``group_by_keys`` never joins two shards' samples). An error ends its shard."""
    for source in sources:
        try:
            for name, data in tar_members(source["stream"]):
                if not META.match(name):
                    yield {"fname": name, "data": data, "__url__": source["url"]}
        except Exception as exc:  # as webdataset: the handler decides (count and go on, or re-raise)
            exc.args = (*exc.args, source["url"])
            if not handler(exc):
                break
        yield {}


def tar_samples(urls: Iterable[dict], handler: Callable[[BaseException], bool]) -> Iterator[dict]:
    """``{"url": ...}`` shards -> samples ``{__key__, __url__, <ext>: bytes, ...}``: a pipeline stage."""
    return group_by_keys(member_files(url_opener(urls, handler=handler), handler), handler=handler)
