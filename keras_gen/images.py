"""Sample grids as PNG files."""

import math
import os

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


def write_png(path: str | os.PathLike, images, columns: int | None = None) -> None:
    """Write a grid of images in [0, 1] to a PNG file, atomically."""
    with _files.atomic_path(path) as temporary:
        temporary.write_bytes(tf.io.encode_png(grid(images, columns)).numpy())
