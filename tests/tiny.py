"""The tiny models every test trains: seconds on a CPU, same code paths as the real ones.

`FAMILIES` is the registry the shared tests (serialization, replicas, export) run
over: a new model family adds one entry here and passes them all.
"""

import dataclasses
from collections.abc import Callable

import keras
import numpy as np

from keras_gen.models import DCGAN, VAE


def dcgan(**overrides) -> DCGAN:
    config = {
        "image_size": 16,
        "channels": 1,
        "latent_dim": 4,
        "generator_filters": 4,
        "discriminator_filters": 4,
    }
    return DCGAN(**{**config, **overrides})


def vae(**overrides) -> VAE:
    return VAE(
        **{"image_shape": (8, 8, 1), "latent_dim": 3, "filters": (4,), **overrides}
    )


def images_for(model, count):
    """The shape of batch a tiny model trains on."""
    if hasattr(model, "image_shape"):
        return (count, *model.image_shape)
    return (count, model.image_size, model.image_size, model.channels)


def binary_images(model, count, seed=0):
    """Random binary images of the model's shape: valid for Bernoulli and Gaussian models."""
    shape = images_for(model, count)
    return (np.random.default_rng(seed).random(shape) < 0.5).astype("float32")


def labels_for(conditions: dict, count: int, seed=0) -> np.ndarray:
    """Random int32 labels (count, heads) for a model's conditions (head -> names)."""
    rng = np.random.default_rng(seed)
    return np.stack(
        [rng.integers(0, len(names), count) for names in conditions.values()], axis=1
    ).astype("int32")


@dataclasses.dataclass
class Family:
    """How the shared tests make, compile and feed one model family."""

    make: Callable[..., keras.Model]  # a tiny model; keyword overrides such as seed=
    compile: Callable[[keras.Model, Callable], None]  # (model, make_optimizer)
    batch: Callable[[keras.Model, int], object] = (
        binary_images  # (model, count) -> data
    )


def _compile_gan(model, make_optimizer):
    model.compile(
        generator_optimizer=make_optimizer(), discriminator_optimizer=make_optimizer()
    )


def _compile_one(model, make_optimizer):
    model.compile(optimizer=make_optimizer())


FAMILIES = {
    "DCGAN": Family(make=dcgan, compile=_compile_gan),
    "VAE": Family(make=lambda **kw: vae(beta=2.0, **kw), compile=_compile_one),
}
