"""The one image reader: shards (``sharding``), the loader (``datamodules.samples``), ``predict`` and
``evaluate`` read image bytes through here, so a truncated or corrupt file is refused the same way
everywhere, with its name.

OpenCV (libjpeg) decodes a JPEG cut short with a warning on stderr ("Premature end of JPEG file") and grey
rows where the data ran out; PNG likewise can lose its tail. Before decoding, :func:`check` asks that the
container be complete: a JPEG's last end-of-image marker (``FF D9``) must follow its last start-of-scan
(``FF DA``; an EXIF thumbnail's own markers come before the image's scans, and the entropy-coded data cannot
hold ``FF D9``, so a cut file fails and bytes appended after the end are allowed); a PNG must hold its
``IEND`` chunk. Other formats are left to the decoder. Video frames (``predict`` on a video) do not come
through here: the capture decodes them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

JPEG_START, JPEG_END, JPEG_SCAN = b"\xff\xd8", b"\xff\xd9", b"\xff\xda"
PNG_START = b"\x89PNG\r\n\x1a\n"


class ImageError(ValueError):
    """An image that is truncated, corrupt or not an image: ``name: reason``."""

    def __init__(self, name: str | Path, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name, self.reason = str(name), reason


def check(data: bytes, name: str | Path) -> None:
    """Raise :class:`ImageError` naming ``name`` when ``data`` is an incomplete JPEG or PNG."""
    if not data:
        raise ImageError(name, "empty file")
    if data.startswith(JPEG_START):
        scan = data.rfind(JPEG_SCAN)
        if scan < 0:
            raise ImageError(name, "corrupt JPEG (no image data: no start-of-scan marker)")
        if data.rfind(JPEG_END) < scan:
            raise ImageError(name, f"truncated JPEG (no end-of-image marker FFD9 after the image data; "
                             f"{len(data)} bytes)")
    elif data.startswith(PNG_START) and data.rfind(b"IEND") < 0:
        raise ImageError(name, f"truncated PNG (no IEND chunk; {len(data)} bytes)")


def decode(data: bytes, name: str | Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """``data`` checked (:func:`check`) and decoded by OpenCV with ``flags``; :class:`ImageError` when it is
    incomplete or does not decode."""
    check(data, name)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise ImageError(name, f"not an image OpenCV can decode ({len(data)} bytes)")
    return image


def read(path: str | Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """The image file at ``path`` (BGR by default); :class:`ImageError` naming it when it is missing,
    unreadable, truncated or corrupt."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageError(path, f"cannot be read ({err.strerror or type(err).__name__})") from None
    return decode(data, path, flags)
