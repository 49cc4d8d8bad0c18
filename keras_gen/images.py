"""Image files: sample grids written as PNG, and encoded images read safely.

An encoded image is sized from its header before it is decoded, and refused over
MAX_IMAGE_PIXELS pixels (a small compressed file can decode to gigabytes) or when
its longer side is over MAX_ASPECT_RATIO times the shorter (its square centre crop
would be a sliver).
"""

import concurrent.futures
import math
import os
import struct
import zlib

import numpy as np
import tensorflow as tf

from keras_gen import _files

# The largest image decoded (width * height): 4096x4096 RGB is 48 MiB decoded, while
# a 20000x20000 PNG of one colour is about 1 MB on disk and over 1 GB decoded.
MAX_IMAGE_PIXELS = 4096 * 4096
# Images are centre-cropped to a square, so a 1x5000 image would keep one pixel.
MAX_ASPECT_RATIO = 4


class ImageError(ValueError):
    """An encoded image is damaged, of an unknown format, or of a refused size."""


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


def side_by_side(*rows, columns: int = 8) -> tuple[np.ndarray, int]:
    """(images, columns) for `grid`: example i of every row in one column, rows
    one above the other (e.g. input / output / target), wrapped after `columns`
    examples into blocks of rows.

    Every image is shown at the largest height and width among the rows, enlarged
    by repeating pixels (a 16x16 input shows its real pixels), and in colour
    (one channel repeated three times); a last, partial block is padded with white.
    """
    rows = [np.asarray(row, np.float32) for row in rows]
    count = len(rows[0])
    if count == 0 or any(len(row) != count for row in rows):
        raise ValueError(
            f"rows of one or more examples each, got {[len(r) for r in rows]}"
        )
    height = max(row.shape[1] for row in rows)
    width = max(row.shape[2] for row in rows)
    shown = [_enlarged(row, height, width) for row in rows]
    columns = min(columns, count)
    blocks = -(-count // columns)  # ceiling division
    blank = np.ones((blocks * columns - count, height, width, 3), np.float32)
    shown = [np.concatenate([row, blank]) for row in shown]
    tiles = [
        row[block * columns : (block + 1) * columns]
        for block in range(blocks)
        for row in shown
    ]
    return np.concatenate(tiles), columns


def _enlarged(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """RGB images of (height, width), each pixel repeated to get there."""
    if height % images.shape[1] or width % images.shape[2]:
        raise ValueError(
            f"cannot enlarge {images.shape[1]}x{images.shape[2]} images to "
            f"{height}x{width} by repeating pixels"
        )
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    images = np.repeat(images, height // images.shape[1], axis=1)
    return np.repeat(images, width // images.shape[2], axis=2)


# --- Line plots: a card's training curve, drawn without a plotting library --------

PLOT_WIDTH, PLOT_HEIGHT = 720, 400
_PLOT_MARGINS = {"left": 90, "right": 24, "top": 44, "bottom": 60}
_INK, _GRID, _LINE = (0, 0, 0), (225, 225, 225), (31, 119, 180)


def line_plot(
    xs, ys, x_label: str, y_label: str, point_labels: list[str] | None = None
) -> np.ndarray:
    """A line through the points (xs, ys) on labelled axes: RGB in [0, 1], (H, W, 3).

    Pillow (a TensorBoard dependency) draws it, as it encodes GIFs: keras_gen needs
    one plain plot, not a plotting library. The x axis starts at 0 (epochs, steps);
    points that are not finite are left out; `y_label` is written above the axes.
    `point_labels` are written beside their points, and the x axis then has round
    ticks instead of one at each point.
    """
    from PIL import Image, ImageDraw, ImageFont

    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    finite = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[finite], ys[finite]
    labels = np.asarray(point_labels or [""] * len(finite), object)[finite]
    image = Image.new("RGB", (PLOT_WIDTH, PLOT_HEIGHT), "white")
    draw, font = ImageDraw.Draw(image), ImageFont.load_default(size=14)
    box = _plot_box()
    room = 1.15 if point_labels else 1.04  # labels are written right of their points
    x_range = (0.0, room * float(xs.max()) if len(xs) and xs.max() > 0 else 1.0)
    y_range = _padded_range(ys)

    def pixel(x, y):
        return _scaled(x, x_range, box[0], box[2]), _scaled(y, y_range, box[3], box[1])

    y_ticks, decimals = _round_ticks(*y_range)
    for y in y_ticks:
        draw.line([pixel(x_range[0], y), pixel(x_range[1], y)], fill=_GRID)
        _text(draw, (box[0] - 8, pixel(0, y)[1]), f"{y:.{decimals}f}", font, "right")
    x_ticks = _round_ticks(*x_range)[0] if point_labels else _x_ticks(xs, x_range)
    for x in x_ticks:
        draw.line([pixel(x, y_range[0]), pixel(x, y_range[1])], fill=_GRID)
        _text(draw, (pixel(x, 0)[0], box[3] + 6), f"{x:g}", font, "top")
    draw.rectangle(box, outline=_INK)
    points = [pixel(x, y) for x, y in zip(xs, ys)]
    if len(points) > 1:
        draw.line(points, fill=_LINE, width=2)
    for (x, y), label in zip(points, labels):
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=_LINE)
        _text(draw, (x + 6, max(y - 18, box[1] + 2)), label, font, "top left")
    _text(draw, (8, 12), y_label, font, "top left")
    _text(draw, ((box[0] + box[2]) / 2, PLOT_HEIGHT - 24), x_label, font, "top")
    return np.asarray(image, np.float32) / 255.0


def _plot_box() -> tuple[int, int, int, int]:
    """The axes' rectangle in pixels: left, top, right, bottom."""
    margins = _PLOT_MARGINS
    return (
        margins["left"],
        margins["top"],
        PLOT_WIDTH - margins["right"],
        PLOT_HEIGHT - margins["bottom"],
    )


def _padded_range(values: np.ndarray) -> tuple[float, float]:
    """The values' range with 5% room each side; one value gets room around it."""
    if len(values) == 0:
        return 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    room = (high - low) * 0.05 or abs(low) * 0.1 or 1.0
    return low - room, high + room


def _scaled(value, value_range, start, end) -> float:
    low, high = value_range
    return start + (value - low) / (high - low) * (end - start)


def _round_ticks(low: float, high: float, count: int = 5) -> tuple[np.ndarray, int]:
    """About `count` round ticks in [low, high], 1, 2 or 5 times a power of ten
    apart, and the decimals that tell them apart."""
    spacing = (high - low) / count
    power = 10.0 ** math.floor(math.log10(spacing))
    spacing = next(m * power for m in (1, 2, 5, 10) if m * power >= spacing)
    ticks = np.arange(math.ceil(low / spacing), math.floor(high / spacing) + 1)
    return ticks * spacing, max(0, -math.floor(math.log10(spacing)))


def _x_ticks(xs: np.ndarray, x_range) -> np.ndarray:
    """A tick at each point while they are few (epochs), else round ticks."""
    distinct = np.unique(xs)
    return distinct if 0 < len(distinct) <= 12 else _round_ticks(*x_range)[0]


def _text(draw, xy, text: str, font, place: str) -> None:
    """Text placed by its box, which works for bitmap fonts too (no anchors):
    "right" ends at x, centred on y; "top" is centred on x below y; "top left"
    starts at xy."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x, y = xy
    if place == "right":
        x, y = x - right, y - (top + bottom) / 2
    elif place == "top":
        x -= (left + right) / 2
    draw.text((x, y), text, fill=_INK, font=font)


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
    padding: int = 2,
) -> None:
    """Write a grid of images in [0, 1] to a PNG file, atomically.

    An existing file is replaced only if keras_gen wrote it, or with `overwrite`.
    One image with `padding` 0 is written as itself.
    """
    png = tf.io.encode_png(grid(images, columns, padding)).numpy()
    with _files.atomic_path(path, png_signed, overwrite) as temporary:
        temporary.write_bytes(_signed_png(png))


_GIF_COMMENT = b"Software: keras_gen"


def write_gif(
    path: str | os.PathLike,
    frames,
    milliseconds_per_frame: int = 150,
    overwrite: bool = False,
) -> None:
    """Write images in [0, 1] (frames, H, W, C) as a looping animated GIF, atomically.

    An existing file is replaced only if keras_gen wrote it, or with `overwrite`.
    Pillow (a TensorBoard dependency) encodes it, each frame with its own palette.
    """
    from PIL import Image

    pixels = np.asarray(tf.cast(tf.round(tf.convert_to_tensor(frames) * 255), tf.uint8))
    if pixels.ndim != 4 or len(pixels) == 0:
        raise ValueError(f"frames must be (frames, H, W, C), got shape {pixels.shape}")
    mode = "L" if pixels.shape[-1] == 1 else "RGB"
    pictures = [
        Image.fromarray(frame.squeeze(-1) if mode == "L" else frame, mode)
        for frame in pixels
    ]
    with _files.atomic_path(path, gif_signed, overwrite) as temporary:
        pictures[0].save(
            temporary,
            format="GIF",
            save_all=True,
            append_images=pictures[1:],
            duration=milliseconds_per_frame,
            loop=0,
            comment=_GIF_COMMENT,
        )


def gif_signed(head: bytes) -> bool:
    """Whether a GIF (its first bytes) was written by keras_gen: its comment says so."""
    return (
        head[:3] == b"GIF"
        and b"\x21\xfe" + bytes([len(_GIF_COMMENT)]) + _GIF_COMMENT in head
    )


# --- Encoded images: sized from their headers, then decoded -----------------------


def decode_images(names, blobs, size: int) -> np.ndarray:
    """Decode encoded images in parallel to uint8 (N, size, size, 3), naming any bad file.

    Every image is first sized from its header, so a decompression bomb (over
    MAX_IMAGE_PIXELS) or a sliver (over MAX_ASPECT_RATIO) is refused before any
    memory is spent on decoding it.
    """
    names, blobs = list(names), list(blobs)
    if not names:
        raise ValueError("no images to decode")
    for name, blob in zip(names, blobs):
        _check_image_size(name, *_image_size(name, blob))

    def decode(name, blob):
        try:
            image = tf.io.decode_image(blob, channels=3, expand_animations=False)
        except tf.errors.InvalidArgumentError as error:
            raise ImageError(f"cannot decode image {name!r}: {error.message}") from None
        if image.shape[0] != size or image.shape[1] != size:
            side = min(image.shape[0], image.shape[1])
            image = tf.image.resize_with_crop_or_pad(image, side, side)
            image = tf.image.resize(image, (size, size), method="area", antialias=True)
            image = tf.cast(tf.round(tf.clip_by_value(image, 0, 255)), tf.uint8)
        return image.numpy()

    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        return np.stack(list(pool.map(decode, names, blobs)))


def _check_image_size(name, width, height):
    if width == 0 or height == 0:
        raise ImageError(f"image {name!r} has no pixels ({width}x{height})")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(
            f"image {name!r} is {width}x{height} pixels, over the limit of "
            f"{MAX_IMAGE_PIXELS} (images.MAX_IMAGE_PIXELS, 4096x4096): decoded it would "
            f"take {width * height * 3 / 2**20:,.0f} MiB, so it is refused as a "
            "possible decompression bomb; resize it first"
        )
    side = min(width, height)
    if max(width, height) > MAX_ASPECT_RATIO * side:
        raise ImageError(
            f"image {name!r} is {width}x{height}: its longer side is over "
            f"{MAX_ASPECT_RATIO} times its shorter one, so its square centre crop "
            f"would keep only {side}x{side}; crop it closer to a square first"
        )


def _image_size(name, blob):
    """(width, height) read from an image's header, without decoding its pixels."""
    for signature, parse in _SIZE_PARSERS:
        if blob.startswith(signature):
            size = parse(blob)
            if size is None:
                raise ImageError(
                    f"cannot decode image {name!r}: its header is truncated or damaged"
                )
            return size
    raise ImageError(
        f"cannot decode image {name!r}: it is not a JPEG, PNG, GIF or BMP file "
        f"(it starts with {blob[:8]!r})"
    )


def _png_size(blob):
    if len(blob) < 24 or blob[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", blob[16:24])


def _gif_size(blob):
    # The logical screen: every frame is decoded into a canvas of this size.
    return struct.unpack("<HH", blob[6:10]) if len(blob) >= 10 else None


def _bmp_size(blob):
    if len(blob) < 26:
        return None
    if struct.unpack("<I", blob[14:18])[0] == 12:  # the old OS/2 header: 16-bit sides
        return struct.unpack("<HH", blob[18:22])
    width, height = struct.unpack("<ii", blob[18:26])
    return abs(width), abs(height)  # a negative height means rows run top-down


# Start-of-frame markers (baseline, progressive, lossless, ...), which carry the size;
# 0xC4, 0xC8 and 0xCC share the range but are tables, not frames.
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(blob):
    """Walk the marker segments after SOI up to the first frame header."""
    position = 2
    while position + 4 <= len(blob):
        if blob[position] != 0xFF:
            return None
        marker = blob[position + 1]
        if marker == 0xFF:  # a fill byte before the marker
            position += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
        elif marker in _JPEG_FRAME_MARKERS:
            if position + 9 > len(blob):
                return None
            height, width = struct.unpack(">HH", blob[position + 5 : position + 9])
            return width, height
        else:
            position += 2 + int.from_bytes(blob[position + 2 : position + 4], "big")
    return None


_SIZE_PARSERS = (
    (b"\x89PNG\r\n\x1a\n", _png_size),
    (b"GIF87a", _gif_size),
    (b"GIF89a", _gif_size),
    (b"BM", _bmp_size),
    (b"\xff\xd8", _jpeg_size),
)
