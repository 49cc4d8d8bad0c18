"""Data augmentation: labelled synthetic images from a conditional generative model.

`augment` gives a `tf.data.Dataset` of (image, label) pairs shaped as
`data.pipeline(labels=...)` gives real ones (float32 images in [0, 1], int32
labels with one column per head), so the two mix with `concatenate` or
`tf.data.Dataset.sample_from_datasets`. Images are generated batch by batch as
the dataset is read, never all at once.
"""

import os

import numpy as np
import tensorflow as tf

from keras_gen import zoo
from keras_gen.models import base

BATCH_SIZE = 256


def augment(
    model_or_preset: base.Family | str | os.PathLike,
    num_samples: int,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    **conditions,
) -> tf.data.Dataset:
    """`num_samples` synthetic (image, label) pairs, the same for the same seed.

    Heads left out of `conditions` cycle through their classes (every
    combination in turn, as `generate` does), so the classes come balanced;
    a head given (a class name or index, or one per sample) is fixed. Batch i
    draws its latents from a seed derived from (seed, i): every pass over the
    dataset gives the same images, and seed 1's first batch is not seed 0's
    second (as seed + i would make it).

    Example:
        synthetic = augment("cgan_fashion_mnist", 6000, seed=0)
        mixed = real.concatenate(synthetic).shuffle(6600).batch(64)
    """
    model = _generator(model_or_preset)
    labels = synthetic_labels(model, num_samples, **conditions)
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    starts = range(0, num_samples, batch_size)

    def generated(index: int) -> tf.Tensor:
        rows = labels[starts[index] : starts[index] + batch_size]
        per_head = {head: rows[:, i] for i, head in enumerate(model.conditions)}
        return model.generate(len(rows), seed=batch_seed(seed, index), **per_head)

    # The first batch is drawn now: its shape is the dataset's, which no attribute
    # common to every family states.
    first = generated(0)

    def batches():
        for index, start in enumerate(starts):
            images = first if index == 0 else generated(index)
            yield images, labels[start : start + batch_size]

    signature = (
        tf.TensorSpec((None, *first.shape[1:]), tf.float32),
        tf.TensorSpec((None, labels.shape[1]), tf.int32),
    )
    return tf.data.Dataset.from_generator(batches, output_signature=signature).unbatch()


def synthetic_labels(model: base.Family, num_samples: int, **conditions) -> np.ndarray:
    """The labels `augment` draws, int32 (num_samples, heads), in its order."""
    _require_conditional_generator(model)
    if (
        isinstance(num_samples, bool)
        or not isinstance(num_samples, int)
        or num_samples < 1
    ):
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    return np.asarray(model._labels(conditions, num_samples, cycle=True), np.int32)


def batch_seed(seed: int, index: int) -> int:
    """The generation seed of batch `index`, hashed from (seed, index).

    31 bits, so every family's sampler takes it (some stack it with an int32).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(np.random.SeedSequence([int(seed), index]).generate_state(1)[0] >> 1)


def _generator(model_or_preset: base.Family | str | os.PathLike) -> base.Family:
    if isinstance(model_or_preset, (str, os.PathLike)):
        model_or_preset = zoo.load(model_or_preset)
    _require_conditional_generator(model_or_preset)
    return model_or_preset


def _require_conditional_generator(model) -> None:
    """A CapabilityError unless the model generates images by class."""
    if not isinstance(model, base.Family):
        raise TypeError(
            f"expected a keras_gen model or preset, got {type(model).__name__}"
        )
    for capability in (base.SAMPLES, base.CONDITIONS):
        if not model.can(capability):
            raise base.CapabilityError(
                f"{type(model).__name__} cannot augment a labelled dataset: it has no "
                f"{capability!r} capability; augmentation needs a conditional "
                "generative model (e.g. cgan_fashion_mnist, cvae_faces)"
            )
