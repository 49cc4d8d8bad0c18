"""What models are given: training batches unpacked, user arrays checked, big requests batched."""

import numpy as np
import tensorflow as tf


def _unwrapped(data):
    # fit((images, labels)) yields ((images, labels),): x is the pair and there is no y.
    return data[0] if isinstance(data, (tuple, list)) and len(data) == 1 else data


def images(data):
    """The images of a batch that may also carry labels or other extras."""
    data = _unwrapped(data)
    return data[0] if isinstance(data, (tuple, list)) else data


def batch_labels(data):
    """The labels of a batch (int, (batch, heads)), or None when it carries only images."""
    data = _unwrapped(data)
    return data[1] if isinstance(data, (tuple, list)) and len(data) > 1 else None


def labelled_batch(data, model_name: str, heads: int) -> tuple:
    """(images, labels) of a training batch, or a ValueError saying how to get labels."""
    found = batch_labels(data)
    if found is None:
        raise ValueError(
            f"{model_name} trains on (images, labels) batches, int32 labels of shape "
            f"(batch, {heads}), but this batch has no labels. Pass them: "
            "fit(images, labels), or data.training_pipeline(images, labels="
            'data.load_labels(name), ...) (set "labels": true in a card\'s data block).'
        )
    return images(data), found


def shaped_images(images, image_shape: tuple) -> tf.Tensor:
    """Images as float32 (batch, *image_shape), or a ValueError naming the shape."""
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape.rank != 4 or tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"expected images of shape (batch, {', '.join(map(str, image_shape))}), "
            f"got {tuple(images.shape)}"
        )
    return images


def checked_images(images, image_shape: tuple) -> tf.Tensor:
    """What users pass: the right shape, a row at least, pixels in [0, 1]."""
    return checked_pixels(shaped_images(images, image_shape))


def checked_latents(latents, latent_dim: int) -> tf.Tensor:
    """Latents as float32 (batch, latent_dim), at least one row, every value finite.

    A wrong shape is a ValueError; an empty batch or a NaN or infinity is refused
    by `checked_values`.
    """
    latents = tf.convert_to_tensor(latents, tf.float32)
    if latents.shape.rank != 2 or latents.shape[-1] != latent_dim:
        raise ValueError(
            f"expected latents of shape (batch, {latent_dim}), got {tuple(latents.shape)}"
        )
    return checked_values(latents, "latents")


def checked_pixels(images, name: str = "images") -> tf.Tensor:
    """Images with at least one row and every pixel in [0, 1] (NaN refused too)."""
    return checked_values(images, name, low=0.0, high=1.0)


def checked_values(values, name: str, low=None, high=None) -> tf.Tensor:
    """`values` (float, batch first) if the batch has a row and every value is valid.

    Valid means finite, or in [low, high] when given (NaN fails every comparison).
    Eagerly a bad batch is a ValueError; in a graph (an exported signature) it fails
    an assertion with the same words. Refusing, not computing, keeps Keras and the
    SavedModel equal: Grappler fuses MatMul+BiasAdd+Relu into a kernel whose Relu
    maps NaN to 0, so a graph would turn NaN latents into a plausible image where
    eager Keras gives NaN.
    """
    if low is None:
        valid = tf.abs(values) <= values.dtype.max  # false for NaN and infinities
        rule = f"{name} must be finite numbers (no NaN or infinity)"
        advice = "pass finite numbers"
    else:
        valid = (values >= low) & (values <= high)
        rule = f"{name} must be in [{low:g}, {high:g}] (no NaN)"
        advice = "scale 0..255 pixels by 1/255"
    empty = f"{name}: the batch is empty; pass at least one row"
    if not tf.executing_eagerly():
        checks = [
            tf.debugging.Assert(tf.shape(values)[0] > 0, [empty]),
            tf.debugging.Assert(tf.reduce_all(valid), [f"{rule}; {advice}"]),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(values)
    if values.shape[0] == 0:
        raise ValueError(empty)
    if not bool(tf.reduce_all(valid)):
        raise _refusal(rule, advice, values.numpy())
    return values


def _refusal(rule: str, advice: str, array: np.ndarray) -> ValueError:
    """The rule, what the values hold (NaN and infinities, or their range), the fix."""
    nan, infinite = int(np.isnan(array).sum()), int(np.isinf(array).sum())
    if nan or infinite:
        found = f"{nan} NaN and {infinite} infinite values; pass finite numbers"
    else:
        found = f"values from {array.min():g} to {array.max():g}; {advice}"
    return ValueError(f"{rule}; got {found}")


def in_batches(function, inputs, *others, batch_size: int = 256) -> tf.Tensor:
    """`function(inputs, *others)` batch by batch of rows, so large requests fit in memory.

    `others` are row-aligned with `inputs` (None passes through). In a graph, where
    the number of rows is not known, it is one call: the exported signatures that
    come here bound their requests.
    """
    count = inputs.shape[0]
    if count is None or count <= batch_size:  # one call, and no slicing op eagerly
        return function(inputs, *others)

    def rows(tensor, start):
        return None if tensor is None else tensor[start : start + batch_size]

    return tf.concat(
        [
            function(rows(inputs, start), *(rows(other, start) for other in others))
            for start in range(0, int(count), batch_size)
        ],
        axis=0,
    )
