"""Shared by every model: noise, loss averaging and batching that are right under tf.distribute."""

import builtins
import difflib
import re
from collections.abc import Callable
from typing import ClassVar

import keras
import numpy as np
import tensorflow as tf


def replica_normal(local_batch, shape, seed, sampler=tf.random.stateless_normal):
    """Standard normal noise (or `sampler`'s) for this replica's share of the global batch.

    Every replica draws the same global-batch tensor from a stateless seed and
    keeps its own rows, so N replicas together see exactly the noise one device
    would draw, and no two replicas share noise.
    """
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context else 1
    replica = context.replica_id_in_sync_group if context else 0
    noise = sampler(tf.concat([[local_batch * replicas], shape], axis=0), seed=seed)
    start = tf.cast(replica, tf.int32) * local_batch
    return noise[start : start + local_batch]


def step_seed(seed, step, stream):
    """A stateless seed for one noise stream at one training step."""
    return tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64) * 16 + stream])


def standard_normal(num_samples, dim, seed):
    """Latents for `generate`: reproducible for an int seed, fresh for None."""
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    if seed is None:
        return tf.random.normal((num_samples, dim))
    return tf.random.stateless_normal((num_samples, dim), seed=(seed, 0))


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


def condition_indices(num_samples: int, conditions: dict, requested: dict) -> tf.Tensor:
    """Class indices, int32 (num_samples, heads), for a conditional model's `generate`.

    `conditions` maps each head to its class names. Each requested value is a class
    name, an index, or a sequence of num_samples of them. A head not requested
    cycles through every combination (sample i gets combination i in mixed radix),
    so a grid shows each class in turn.
    """
    unknown = set(requested) - set(conditions)
    if unknown:
        raise ValueError(
            f"unknown condition {sorted(unknown)}; this model takes {list(conditions)}"
        )
    columns, stride = [], 1
    for head, names in conditions.items():
        value = requested.get(head)
        if value is None:
            columns.append((np.arange(num_samples) // stride) % len(names))
            stride *= len(names)
            continue
        values = [value] * num_samples if np.ndim(value) == 0 else builtins.list(value)
        if len(values) != num_samples:
            raise ValueError(
                f"{head}: got {len(values)} values for {num_samples} samples; "
                "give one value, or one per sample"
            )
        columns.append([_class_index(head, v, names) for v in values])
    return tf.constant(np.stack(columns, axis=1), tf.int32)


def _class_index(head, value, names):
    if isinstance(value, str):
        if value not in names:
            close = difflib.get_close_matches(value, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"unknown {head} {value!r}.{hint} Choose from: {', '.join(names)}"
            )
        return names.index(value)
    index = int(value)
    if not 0 <= index < len(names):
        raise ValueError(
            f"{head} index {index} is out of range; there are {len(names)} classes: "
            f"{', '.join(names)}"
        )
    return index


def parse_prompt(prompt: str, conditions: dict) -> dict:
    """A text prompt -> {head: class name}, matching each head's class names as whole words.

    "ankle boot" -> {"labels": "ankle boot"}; "female 30-44" -> {"gender": "female",
    "age": "30-44"}. Longer names win ("female" is not read as "male").
    """
    text = " " + prompt.lower().strip() + " "
    found = {}
    candidates = sorted(
        ((head, name) for head, names in conditions.items() for name in names),
        key=lambda pair: -len(pair[1]),
    )
    for head, name in candidates:
        pattern = r"(?<![\w+-])" + re.escape(name.lower()) + r"(?![\w+-])"
        if head not in found and re.search(pattern, text):
            found[head] = name
            text = re.sub(pattern, " ", text)
    if not found or text.strip():
        choices = "; ".join(f"{h}: {', '.join(n)}" for h, n in conditions.items())
        left = f" (not understood: {text.strip()!r})" if text.strip() else ""
        raise ValueError(
            f"cannot read the prompt {prompt!r}{left}. Name a class of {choices}"
        )
    return found


def checked_labels(labels, conditions: dict, count=None) -> tf.Tensor:
    """Labels as int32 (batch, heads), every index in range for its head.

    `conditions` maps each head to its class names; with one head, labels of shape
    (batch,) are accepted too. `count` is the batch size the labels must match.
    Eagerly a bad request is a ValueError; in a graph (training, exported
    signatures) it fails an assertion, so an out-of-range label is never silently
    read as "no class".
    """
    labels = tf.convert_to_tensor(labels)
    heads = len(conditions)
    if not labels.dtype.is_integer:
        raise ValueError(f"labels must be integer class indices, got {labels.dtype}")
    labels = tf.cast(labels, tf.int32)
    if labels.shape.rank == 1 and heads == 1:
        labels = labels[:, None]
    if labels.shape.rank != 2 or labels.shape[-1] != heads:
        raise ValueError(
            f"expected labels of shape (batch, {heads}), one column per head "
            f"({', '.join(conditions)}), got {tuple(labels.shape)}"
        )
    if tf.executing_eagerly():
        if count is not None and labels.shape[0] != int(count):
            raise ValueError(f"got {labels.shape[0]} labels for {int(count)} inputs")
        values = labels.numpy()
        for column, (head, names) in enumerate(conditions.items()):
            bad = values[(values[:, column] < 0) | (values[:, column] >= len(names))]
            if len(bad):
                raise ValueError(
                    f"{head} index {bad[0, column]} is out of range; there are "
                    f"{len(names)} classes: {', '.join(names)}"
                )
        return labels
    ranges = ", ".join(
        f"{head} 0..{len(names) - 1}" for head, names in conditions.items()
    )
    checks = [
        tf.debugging.assert_non_negative(
            labels, message=f"labels out of range; valid: {ranges}"
        ),
        tf.debugging.assert_less(
            labels,
            tf.constant([len(names) for names in conditions.values()], tf.int32),
            message=f"labels out of range; valid: {ranges}",
        ),
    ]
    if count is not None:
        checks.append(
            tf.debugging.assert_equal(
                tf.shape(labels)[0],
                tf.cast(count, tf.int32),
                message="the batch needs one row of labels per input",
            )
        )
    with tf.control_dependencies(checks):
        return tf.identity(labels)


def one_hot(labels, conditions: dict) -> tf.Tensor:
    """Checked labels (batch, heads) -> float32 (batch, total classes): a one-hot per head."""
    return tf.concat(
        [
            tf.one_hot(labels[:, column], len(names))
            for column, names in enumerate(conditions.values())
        ],
        axis=-1,
    )


def labelled_batch(data, model_name: str) -> tuple:
    """(images, labels) of a training batch, or a ValueError saying how to get labels."""
    found = batch_labels(data)
    if found is None:
        raise ValueError(
            f"{model_name} trains on (images, labels) batches, labels int32 "
            "(batch, heads), but this batch has no labels. Pass them: "
            "fit(images, labels), or data.training_pipeline(images, labels="
            'data.load_labels(name), ...) (set "labels": true in a card\'s data block).'
        )
    return images(data), found


def conditional_sample_endpoint(latent_dim: int, decode: Callable, heads: int) -> tuple:
    """base.sample_endpoint with one more input: `labels` (heads,), every sample's classes.

    `decode(latents, labels)` receives them repeated to (batch, heads).
    """

    def sample(num_samples, seed, labels):
        def decode_one_combination(latents):
            return decode(latents, tf.tile(labels[None], [tf.shape(latents)[0], 1]))

        function, _ = sample_endpoint(latent_dim, decode_one_combination)
        return function(num_samples, seed)

    _, signature = sample_endpoint(latent_dim, decode)
    return sample, [*signature, tf.TensorSpec([heads], tf.int32, name="labels")]


def in_batches(function, inputs, batch_size=256):
    """Apply `function` batch by batch, so large requests fit in memory."""
    count = int(inputs.shape[0])
    return tf.concat(
        [function(inputs[i : i + batch_size]) for i in range(0, count, batch_size)], 0
    )


def logs(metrics) -> dict:
    """Tracker results as train_step/test_step return them to fit.

    Under MultiWorkerMirroredStrategy, Keras 3 reduces these with
    reduce("MEAN", axis=0), which fails on scalars (tensorflow#72388); there
    each result goes as a vector of one, which reduces to the same scalar.
    """
    results = {metric.name: metric.result() for metric in metrics}
    if isinstance(
        tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy
    ):
        results = {name: tf.reshape(value, [1]) for name, value in results.items()}
    return results


MAX_EXPORTED_SAMPLES = 1024


def sample_endpoint(latent_dim: int, decode) -> tuple:
    """The exported `sample(num_samples, seed)`: the images `generate(num_samples, seed)` gives.

    Requests outside 1..MAX_EXPORTED_SAMPLES are refused at the signature, before any
    memory is allocated for them.
    """

    def sample(num_samples, seed):
        checks = [
            tf.debugging.assert_positive(
                num_samples, message="num_samples must be at least 1"
            ),
            tf.debugging.assert_less_equal(
                num_samples,
                MAX_EXPORTED_SAMPLES,
                message=f"num_samples must be at most {MAX_EXPORTED_SAMPLES}; "
                "ask several times for more",
            ),
        ]
        with tf.control_dependencies(checks):
            shape = tf.stack([num_samples, latent_dim])
        latents = tf.random.stateless_normal(shape, seed=tf.stack([seed, 0]))
        return {"images": decode(latents)}

    signature = [
        tf.TensorSpec([], tf.int32, name="num_samples"),
        tf.TensorSpec([], tf.int64, name="seed"),
    ]
    return sample, signature


class NetworkOptimizers:
    """compile state for models that train each network with its own optimizer.

    A model lists `network_optimizers` (optimizer attribute -> network attribute)
    and its compile() names the optimizers and calls `_compile_networks`. The
    compile config then round-trips, so a reloaded .keras file comes back compiled.
    """

    network_optimizers: ClassVar[dict[str, str]] = {}

    def _compile_networks(self, chosen: dict, default, **kwargs):
        super().compile(optimizer=None, **kwargs)  # Keras would add an unused RMSprop
        mixed = keras.mixed_precision.global_policy().name == "mixed_float16"
        for name, network in self.network_optimizers.items():
            optimizer = keras.optimizers.get(chosen.get(name) or default(name))
            if mixed and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                # What Keras's own compile does for model.optimizer, for each of ours.
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            optimizer.build(getattr(self, network).trainable_variables)
            setattr(self, name, optimizer)

    def get_compile_config(self):
        if not self.compiled:
            return {}
        return {
            name: keras.optimizers.serialize(getattr(self, name))
            for name in self.network_optimizers
        }

    def compile_from_config(self, config):
        self.compile(
            **{
                key: keras.optimizers.deserialize(value)
                for key, value in config.items()
                if key in self.network_optimizers
            }
        )


class LatentGenerator:
    """generate, decode, call and exported endpoints of a model whose `generator` maps
    latents (batch, latent_dim) to images in the tanh range [-1, 1] (DCGAN, WGANGP)."""

    def call(self, latents, training=False):
        # Images in [0, 1], like generate and decode, not the generator's tanh range.
        return (self.generator(latents, training=training) + 1.0) / 2.0

    def generate(self, num_samples: int, seed: int | None = None) -> tf.Tensor:
        """`num_samples` float32 images in [0, 1]; the same seed gives the same images."""
        latents = standard_normal(num_samples, self.latent_dim, seed)
        return in_batches(self.decode, latents)

    def decode(self, latents) -> tf.Tensor:
        """Generated images in [0, 1] for latents of shape (batch, latent_dim)."""
        latents = checked_latents(latents, self.latent_dim)
        return tf.clip_by_value(
            (self.generator(latents, training=False) + 1.0) / 2.0, 0.0, 1.0
        )

    def serving_endpoints(self) -> dict:
        """Functions and input signatures that keras_gen.export writes, by name.

        The first is also `serving_default`.
        """
        latents = tf.TensorSpec([None, self.latent_dim], tf.float32, name="latents")
        return {
            "generate": (lambda latents: {"images": self.decode(latents)}, [latents]),
            "sample": sample_endpoint(self.latent_dim, self.decode),
        }


class TupleConfig:
    """from_config that turns JSON's lists back into the tuples the constructor keeps,
    so get_config and from_config round-trip exactly."""

    @classmethod
    def from_config(cls, config):
        return cls(
            **{
                key: tuple(value)
                if key in ("image_shape", "filters") and isinstance(value, list)
                else value
                for key, value in config.items()
            }
        )
