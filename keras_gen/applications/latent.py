"""Latent exploration: paths between latents, and directions that change one attribute.

Works on every family that decodes standard normal latents (`base.LatentFamily`:
VAEs, GANs). Images enter the latent space through the encoder where the model
has one (`base.RECONSTRUCTION`), otherwise through `recover_latents`, which
searches for the latent the generator maps closest to each image.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_gen._choices import INTERPOLATIONS
from keras_gen.models import base, inputs, noise

# Latent recovery: Adam on the pixel error, with a weak pull towards the prior so
# the latents stay where the generator was trained.
RECOVERY_STEPS = 300
RECOVERY_LEARNING_RATE = 0.05
RECOVERY_PRIOR_WEIGHT = 1e-3


def interpolate(
    model: base.LatentFamily,
    start,
    end,
    steps: int = 8,
    method: str = "slerp",
    **conditions,
) -> tf.Tensor:
    """`steps` images in [0, 1] on a path from `start` to `end`, both included.

    `start` and `end` are each a seed (int: the latent `generate(1, seed=...)`
    decodes), a latent (latent_dim,), or an image (H, W, C) in [0, 1]. "slerp"
    follows the great circle, where Gaussian latents concentrate (White 2016);
    "linear" cuts through the low-norm middle, which generators rarely saw.

    Example:
        strip = interpolate(zoo.load("dcgan_faces"), 1, 2, steps=8)
    """
    first = latent_of(model, start, **conditions)
    last = latent_of(model, end, **conditions)
    return model.decode(path(first, last, steps, method), **conditions)


def path(start, end, steps: int, method: str = "slerp") -> tf.Tensor:
    """Latents (steps, latent_dim) from `start` to `end` by `method` (INTERPOLATIONS)."""
    if method not in INTERPOLATIONS:
        raise ValueError(
            f"method must be one of {', '.join(INTERPOLATIONS)}, got {method!r}"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an integer of at least 2, got {steps!r}")
    start = np.asarray(start, np.float64)
    end = np.asarray(end, np.float64)
    t = np.linspace(0.0, 1.0, steps)[:, None]
    cosine = np.dot(start, end) / (np.linalg.norm(start) * np.linalg.norm(end))
    angle = np.arccos(np.clip(cosine, -1.0, 1.0))
    if method == "linear" or np.sin(angle) < 1e-6:
        # Parallel latents: the great circle and the chord coincide.
        return tf.constant((1 - t) * start + t * end, tf.float32)
    weights = np.sin((1 - t) * angle), np.sin(t * angle)
    return tf.constant(
        (weights[0] * start + weights[1] * end) / np.sin(angle), tf.float32
    )


def latent_of(model: base.LatentFamily, value, **conditions) -> tf.Tensor:
    """The latent (latent_dim,) of a seed, a latent or an image; see `interpolate`."""
    _require_latents(model)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return noise.standard_normal(1, model.latent_dim, int(value))[0]
    array = np.asarray(value, np.float32)
    if array.shape == (model.latent_dim,):
        return inputs.checked_latents(array[None], model.latent_dim)[0]
    if array.ndim == 3:
        return latents_of_images(model, array[None], **conditions)[0]
    raise ValueError(
        f"cannot place {array.shape} in the latent space of {type(model).__name__}: "
        f"give a seed (int), a latent ({model.latent_dim},) or one image (H, W, C)"
    )


def latents_of_images(model: base.LatentFamily, images, **conditions) -> tf.Tensor:
    """Latents (N, latent_dim) for images: the posterior mean, or a recovered latent."""
    _require_latents(model)
    if model.can(base.RECONSTRUCTION):
        return model.encode(images, **conditions).mean()
    return recover_latents(model, images, **conditions)


def recover_latents(
    model: base.LatentFamily,
    images,
    steps: int = RECOVERY_STEPS,
    seed: int = 0,
    prior_weight: float = RECOVERY_PRIOR_WEIGHT,
    **conditions,
) -> tf.Tensor:
    """Latents whose decoded images are closest to `images` (mean squared error).

    A generator has no encoder: each latent starts from a seeded normal draw and
    follows Adam on the pixel error for `steps` steps (Lipton and Tripathi 2017),
    plus `prior_weight` times the squared norm, which keeps it where latents lie.
    """
    _require_latents(model)
    images = tf.convert_to_tensor(images, tf.float32)
    labels = model._labels(conditions, int(images.shape[0]))
    latents = keras.Variable(
        noise.standard_normal(int(images.shape[0]), model.latent_dim, seed)
    )
    optimizer = keras.optimizers.Adam(RECOVERY_LEARNING_RATE)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            decoded = model._decode(latents, labels)
            error = tf.reduce_mean(tf.square(decoded - images), axis=[1, 2, 3])
            prior = prior_weight * tf.reduce_sum(tf.square(latents), axis=1)
            loss = tf.reduce_sum(error + prior)
        optimizer.apply_gradients([(tape.gradient(loss, latents), latents)])

    for _ in range(steps):
        step()
    return tf.convert_to_tensor(latents.value)


def attribute_direction(
    model: base.LatentFamily, images, labels, value, **conditions
) -> tf.Tensor:
    """The mean latent of images labelled `value` minus that of the others.

    `labels` holds one label per image (one head, e.g. the age groups); adding
    the direction to a latent moves its image towards `value` (Larsen et al.
    2016's attribute vectors).

    Example:
        older = attribute_direction(vae, faces, ages, "65+")
        model.decode(latents + older)
    """
    labels = np.asarray(labels)
    if labels.shape != (len(images),):
        raise ValueError(
            f"labels must hold one label per image, shape ({len(images)},); "
            f"got {labels.shape}"
        )
    chosen = labels == value
    if chosen.all() or not chosen.any():
        raise ValueError(
            f"{value!r} must label some images but not all ({chosen.sum()} of "
            f"{len(labels)} do): a direction needs both groups"
        )
    latents = np.asarray(latents_of_images(model, images, **conditions))
    return tf.constant(latents[chosen].mean(0) - latents[~chosen].mean(0))


def _require_latents(model) -> None:
    """A CapabilityError unless the model decodes standard normal latents."""
    if not isinstance(model, base.LatentFamily):
        raise base.CapabilityError(
            f"{type(model).__name__} has no latent space to explore: latent "
            "exploration needs a model that decodes latents (a VAE or a GAN)"
        )
