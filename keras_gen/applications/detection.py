"""Telling synthetic images from real ones: the training set, the detector, its scores.

A detector is a `Classifier` with one head, "source", whose classes are "real"
and "synthetic". Its training set puts real photos (label 0) beside samples of
generative presets (label 1). The real faces are JPEG files (faces64.tar, quality
95, 4:4:4) and generated images are not: `as_stored` gives synthetic images the
same JPEG round trip, so a detector cannot learn the file format in place of
the image, and calls a JPEG of a generated face synthetic still.
"""

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_gen import data, images, metrics
from keras_gen.applications import augmentation
from keras_gen.models import base
from keras_gen.models.classifier import Classifier

HEAD = "source"
CLASSES = ("real", "synthetic")
REAL, SYNTHETIC = 0, 1
JPEG_QUALITY = 95  # faces64.tar's
GENERATION_BATCH = 500


def detector(
    image_shape: tuple[int, int, int],
    filters: tuple[int, ...] = (16, 32, 64, 64),
    feature_dim: int = 64,
) -> Classifier:
    """A fresh detector: a Classifier whose one head says real or synthetic."""
    return Classifier(image_shape, {HEAD: list(CLASSES)}, filters, feature_dim)


def is_detector(model) -> bool:
    """Whether `model` classifies images into exactly ("real", "synthetic")."""
    return (
        isinstance(model, base.Family)
        and model.can(base.CLASSIFY)
        and {head: tuple(names) for head, names in model.class_names.items()}
        == {HEAD: CLASSES}
    )


def require_detector(model, name: str | os.PathLike | None = None) -> None:
    """A CapabilityError (a ValueError) unless `model` is a detector, saying what it is."""
    if is_detector(model):
        return
    shown = f"{name} is a {type(model).__name__}" if name else type(model).__name__
    if not model.can(base.CLASSIFY):
        found = f"{shown}, which does not classify images"
    else:
        heads = ", ".join(f"{h} ({'/'.join(n)})" for h, n in model.class_names.items())
        found = f"{shown} with the heads {heads}"
    raise base.CapabilityError(
        f"{found}: not a real-vs-synthetic detector, which has one head {HEAD!r} "
        f"with the classes {', '.join(CLASSES)}; use detector_faces"
    )


def as_stored(pixels) -> np.ndarray:
    """Images in [0, 1] as 8-bit pixels after a JPEG round trip at JPEG_QUALITY, 4:4:4.

    What the real faces went through: a detector trained on both then sees the
    same compression in each class.
    """
    pixels = np.asarray(pixels, np.float32)
    if pixels.ndim != 4 or pixels.shape[-1] not in (1, 3):
        raise ValueError(f"expected images (N, H, W, 1 or 3), got {pixels.shape}")
    quantized = tf.cast(tf.round(tf.clip_by_value(pixels, 0.0, 1.0) * 255.0), tf.uint8)
    return np.stack(
        [
            tf.io.decode_jpeg(
                tf.io.encode_jpeg(
                    image, quality=JPEG_QUALITY, chroma_downsampling=False
                )
            ).numpy()
            for image in quantized
        ]
    )


def synthetic_images(
    generator: base.Family, num_samples: int, seed: int, stored: bool = True
) -> np.ndarray:
    """`num_samples` uint8 samples of `generator`, JPEG round-tripped unless not `stored`.

    Drawn GENERATION_BATCH at a time, batch i from `augmentation.batch_seed(seed,
    i)`, so seeds 0 and 1 share no image. A conditional generator cycles through
    its classes, as `generate` does.
    """
    generator.require(base.SAMPLES, "give synthetic images")
    parts = []
    for index, start in enumerate(range(0, num_samples, GENERATION_BATCH)):
        count = min(GENERATION_BATCH, num_samples - start)
        pixels = generator.generate(count, seed=augmentation.batch_seed(seed, index))
        if stored:
            parts.append(as_stored(pixels))
        else:
            parts.append(np.round(np.asarray(pixels) * 255.0).astype(np.uint8))
    return np.concatenate(parts)


def training_set(real, synthetic: dict, seed: int = 0) -> tuple:
    """(images uint8, labels int32 (N, 1), sources) shuffled: real label 0, the rest 1.

    `real` holds uint8 real images; `synthetic` maps each generator's name to its
    uint8 images. `sources` names where each image came from ("real" or the
    generator), for per-generator measures. Feed it to `data.pipeline(images,
    labels=labels)`.
    """
    groups = {
        "real": np.asarray(real),
        **{k: np.asarray(v) for k, v in synthetic.items()},
    }
    shapes = {name: group.shape[1:] for name, group in groups.items()}
    if len(set(shapes.values())) != 1 or any(
        g.dtype != np.uint8 for g in groups.values()
    ):
        raise ValueError(
            f"every group must hold uint8 images of one shape, got {shapes}"
        )
    pixels = np.concatenate(list(groups.values()))
    sources = np.concatenate([[name] * len(group) for name, group in groups.items()])
    labels = np.where(sources == "real", REAL, SYNTHETIC).astype(np.int32)[:, None]
    order = np.random.default_rng(seed).permutation(len(pixels))
    return pixels[order], labels[order], sources[order]


def synthetic_probability(model: Classifier, pixels) -> np.ndarray:
    """P(synthetic) per image (float32 in [0, 1], the detector's shape)."""
    require_detector(model)
    return np.asarray(model.probabilities(pixels)[HEAD][:, SYNTHETIC])


def scores(real_probabilities, synthetic_probabilities) -> dict:
    """How well P(synthetic) separates real images from synthetic ones.

    Accuracy at the 0.5 threshold over both groups together, the share of each
    group classified right, and the ROC-AUC (threshold-free; 0.5 is chance).
    """
    real_right = np.asarray(real_probabilities) < 0.5
    synthetic_right = np.asarray(synthetic_probabilities) >= 0.5
    return {
        "accuracy": float(np.concatenate([real_right, synthetic_right]).mean()),
        "real_called_real": float(real_right.mean()),
        "synthetic_called_synthetic": float(synthetic_right.mean()),
        "roc_auc": metrics.roc_auc(real_probabilities, synthetic_probabilities),
    }


def read_images(paths, image_shape: tuple[int, int, int]) -> np.ndarray:
    """Image files as float32 (N, *image_shape) in [0, 1], prepared as the faces were.

    Any size: centre-cropped to a square and resized by area averaging
    (`images.decode_images`); reduced to luma for a one-channel model.
    """
    height, width, channels = image_shape
    if height != width:
        raise ValueError(
            f"images are resized to squares; the model takes {height}x{width}"
        )
    blobs = []
    for path in paths:
        file = Path(path)
        if not file.is_file():
            state = "does not exist" if not file.exists() else "is not a regular file"
            raise ValueError(
                f"{path} {state}; pass image files (PNG, JPEG, GIF or BMP)"
            )
        blobs.append(file.read_bytes())
    pixels = images.decode_images([str(p) for p in paths], blobs, height)
    pixels = pixels.astype(np.float32) / 255.0
    return np.asarray(data.luminance(pixels)) if channels == 1 else pixels
