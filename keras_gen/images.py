"""Sample grids as PNG files."""

import math
import os
import struct
import zlib

import numpy as np
import tensorflow as tf

from keras_gen import _files


def grid(images, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile float images in [0, 1] (N, H, W, C) into one uint8 image, row by row."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (N, H, W, C), got {images.shape}")
    count, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    canvas = np.full(
        (
            rows * (height + padding) + padding,
            columns * (width + padding) + padding,
            channels,
        ),
        255,
        np.uint8,
    )
    pixels = np.round(np.clip(images, 0.0, 1.0) * 255).astype(np.uint8)
    for i, image in enumerate(pixels):
        top = padding + (i // columns) * (height + padding)
        left = padding + (i % columns) * (width + padding)
        canvas[top : top + height, left : left + width] = image
    return canvas


# A tEXt chunk right after the header marks a PNG as keras_gen's: a later write may
# replace it, while a PNG of the user's at the same path is refused.
_SIGNATURE = b"Software\0keras_gen"
_PNG_HEADER_END = 33  # 8-byte PNG signature + the 25-byte IHDR chunk


def _signed_png(png: bytes) -> bytes:
    chunk = b"tEXt" + _SIGNATURE
    text = (
        struct.pack(">I", len(_SIGNATURE))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
    )
    return png[:_PNG_HEADER_END] + text + png[_PNG_HEADER_END:]


def png_signed(head: bytes) -> bool:
    """Whether a PNG (its first bytes) was written by keras_gen."""
    return (
        head[_PNG_HEADER_END + 8 : _PNG_HEADER_END + 8 + len(_SIGNATURE)] == _SIGNATURE
    )


def write_png(
    path: str | os.PathLike,
    images,
    columns: int | None = None,
    overwrite: bool = False,
) -> None:
    """Write a grid of images in [0, 1] to a PNG file, atomically.

    An existing file is replaced only if keras_gen wrote it, or with `overwrite`.
    """
    png = tf.io.encode_png(grid(images, columns)).numpy()
    with _files.atomic_path(path, png_signed, overwrite) as temporary:
        temporary.write_bytes(_signed_png(png))
