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
    # Fit steps until every network has trained: a DBN's layers take turns.
    train_steps: int = 1


def _compile_gan(model, make_optimizer):
    model.compile(
        generator_optimizer=make_optimizer(), discriminator_optimizer=make_optimizer()
    )


def _compile_one(model, make_optimizer):
    model.compile(optimizer=make_optimizer())


def wgan_gp(**overrides) -> keras.Model:
    from keras_gen.models import WGANGP

    config = {
        "image_size": 16,
        "channels": 1,
        "latent_dim": 4,
        "generator_filters": 4,
        "critic_filters": 4,
        "num_critic_steps": 2,
        # Plain SGD(0.1), as the replica check trains, overshoots with lambda = 10.
        "gradient_penalty_weight": 1.0,
    }
    return WGANGP(**{**config, **overrides})


def _compile_wgan_gp(model, make_optimizer):
    model.compile(
        generator_optimizer=make_optimizer(), critic_optimizer=make_optimizer()
    )


def _noiseless(overrides: dict) -> dict:
    """Overrides for a family that draws no training noise: the shared tests give
    every family a seed=, which these do not take."""
    return {key: value for key, value in overrides.items() if key != "seed"}


def pixelcnn(**overrides) -> keras.Model:
    from keras_gen.models import PixelCNN

    config = {"image_shape": (6, 6, 1), "filters": 4, "num_layers": 2}
    return PixelCNN(**{**config, **_noiseless(overrides)})


def conditional_gan(**overrides) -> keras.Model:
    from keras_gen.models import ConditionalGAN

    config = {
        "conditions": {"digit": ["zero", "one", "two"]},
        "image_size": 16,
        "channels": 1,
        "latent_dim": 4,
        "generator_filters": 4,
        "discriminator_filters": 4,
    }
    return ConditionalGAN(**{**config, **overrides})


def conditional_vae(**overrides) -> keras.Model:
    from keras_gen.models import ConditionalVAE

    config = {
        "conditions": {"age": ["young", "old"], "gender": ["female", "male", "other"]},
        "image_shape": (8, 8, 1),
        "latent_dim": 3,
        "filters": (4,),
    }
    return ConditionalVAE(**{**config, **overrides})


def labelled_images(model, count, seed=0):
    """(binary images, labels) for a conditional model."""
    return binary_images(model, count, seed), labels_for(model.conditions, count, seed)


def classifier(**overrides) -> keras.Model:
    from keras_gen.models import Classifier

    config = {
        "image_shape": (8, 8, 1),
        "class_names": {"shape": ["a", "b", "c"], "size": ["small", "large"]},
        "filters": (4,),
        "feature_dim": 6,
        # Training noise on, so the shared tests cover it (replicas, resume, export).
        "dropout": 0.25,
        "flip": True,
        "shift": 1,
    }
    return Classifier(**{**config, **overrides})


def _classified_images(model, count, seed=0):
    return binary_images(model, count, seed), labels_for(model.class_names, count, seed)


def mlp_gan(**overrides) -> keras.Model:
    from keras_gen.models import MLPGAN

    config = {
        "image_size": 8,
        "channels": 1,
        "latent_dim": 4,
        "generator_units": (8, 16),
        "discriminator_units": (16, 8),
    }
    return MLPGAN(**{**config, **overrides})


def mlp_vae(**overrides) -> VAE:
    return vae(network="mlp", filters=(8,), **overrides)


def rbm(**overrides) -> keras.Model:
    from keras_gen.models import RBM

    config = {
        "image_shape": (4, 4, 1),
        "hidden_units": 6,
        "gibbs_steps": 2,
        "persistent_chains": 8,  # 4 per replica in the replica check
        "sampling_steps": 5,
        "ais_runs": 16,
        "ais_temperatures": 100,
    }
    return RBM(**{**config, **overrides})


def dbn(**overrides) -> keras.Model:
    from keras_gen.models import DBN

    config = {
        "image_shape": (4, 4, 1),
        "hidden_units": (6, 5),
        "steps_per_layer": 1,  # step 0 trains layer 1, every later step layer 2
        "gibbs_steps": 2,
        "persistent_chains": 8,
        "sampling_steps": 5,
    }
    return DBN(**{**config, **overrides})


def _compile_layers(model, make_optimizer):
    model.compile(**{name: make_optimizer() for name in model.network_optimizers})


def gaussian_mixture(**overrides) -> keras.Model:
    """Started from fixed parameters, so the shared tests take real EM steps (a
    fresh mixture's first epoch initialises it, as MixturePriorVAE's does there)."""
    from keras_gen.models import GaussianMixture

    model = GaussianMixture(**{"image_shape": (4, 4, 1), "components": 3, **overrides})
    count, dimension = 3, model.mixture.dimension
    covariances = np.full((count, dimension), 0.25)  # diagonal: the variances
    if model.covariance == "full":
        covariances = covariances[..., None] * np.eye(dimension)
    means = np.random.default_rng(0).random((count, dimension))
    model.initialize(np.full(count, 1 / count), means, covariances)
    return model


def mixture_prior_vae(**overrides) -> keras.Model:
    from keras_gen.models import MixturePriorVAE

    config = {
        "prior_components": 2,
        "prior_covariance": "diagonal",
        "image_shape": (8, 8, 1),
        "latent_dim": 3,
        "filters": (4,),
    }
    return MixturePriorVAE(**{**config, **overrides})


def pix2pix(**overrides) -> keras.Model:
    from keras_gen.models import Pix2Pix

    config = {
        "image_size": 8,  # the U-Net halves it to 1x1 in three steps
        "input_channels": 1,
        "output_channels": 3,
        "generator_filters": 4,
        "discriminator_filters": 4,
    }
    return Pix2Pix(**{**config, **overrides})


def super_resolution(**overrides) -> keras.Model:
    from keras_gen.models import SuperResolution

    config = {"input_size": 4, "scale": 4, "filters": 4, "residual_blocks": 1}
    return SuperResolution(**{**config, **_noiseless(overrides)})


def srgan(**overrides) -> keras.Model:
    """SuperResolution with its adversarial loss (the feature loss needs a classifier
    preset of the output's shape: tests/test_super_resolution.py makes one)."""
    return super_resolution(
        adversarial_weight=0.1, discriminator_filters=4, **_noiseless(overrides)
    )


def image_pairs(model, count, seed=0):
    """(inputs, targets) in [0, 1] of a translation model's shapes."""
    rng = np.random.default_rng(seed)
    inputs = rng.random((count, *model.input_image_shape)).astype("float32")
    return inputs, rng.random((count, *model.image_shape)).astype("float32")


def diffusion(**overrides) -> keras.Model:
    """One U-Net level and no attention (every layer is some 70 ops of a training
    step's graph, which is what the shared tests spend their time tracing), two
    heads and their null classes, a short schedule; test_diffusion's model has two
    levels and attention."""
    from keras_gen.models import Diffusion

    config = {
        "conditions": {"age": ["young", "old"], "gender": ["female", "male", "other"]},
        "image_shape": (4, 4, 1),
        "widths": (4,),
        "residual_blocks": 1,
        "attention_levels": 0,
        "groups": 2,
        "time_embedding_dim": 4,
        "timesteps": 20,
        "sampling_steps": 3,
    }
    return Diffusion(**{**config, **overrides})


FAMILIES = {
    "Classifier": Family(
        make=classifier, compile=_compile_one, batch=_classified_images
    ),
    "PixelCNN": Family(make=pixelcnn, compile=_compile_one),
    "DCGAN": Family(make=dcgan, compile=_compile_gan),
    "DCGAN (EMA)": Family(
        make=lambda **kw: dcgan(generator_ema_decay=0.9, **kw), compile=_compile_gan
    ),
    "VAE": Family(make=lambda **kw: vae(beta=2.0, **kw), compile=_compile_one),
    "VAE (mlp)": Family(make=mlp_vae, compile=_compile_one),
    "VAE (residual)": Family(
        make=lambda **kw: vae(network="residual", **kw), compile=_compile_one
    ),
    "VAE (IWAE)": Family(
        make=lambda **kw: vae(training_samples=3, **kw), compile=_compile_one
    ),
    "VAE (DP-SGD)": Family(
        make=lambda **kw: vae(dp_clip=1.0, dp_noise=0.5, **kw), compile=_compile_one
    ),
    "MLPGAN": Family(make=mlp_gan, compile=_compile_gan),
    "WGANGP": Family(make=wgan_gp, compile=_compile_wgan_gp),
    "ConditionalGAN": Family(
        make=conditional_gan, compile=_compile_gan, batch=labelled_images
    ),
    "ConditionalVAE": Family(
        make=conditional_vae, compile=_compile_one, batch=labelled_images
    ),
    "RBM": Family(make=rbm, compile=_compile_one),
    "DBN": Family(make=dbn, compile=_compile_layers, train_steps=2),
    "GaussianMixture": Family(make=gaussian_mixture, compile=_compile_one),
    "MixturePriorVAE": Family(make=mixture_prior_vae, compile=_compile_one),
    "Pix2Pix": Family(make=pix2pix, compile=_compile_gan, batch=image_pairs),
    "SuperResolution": Family(
        make=super_resolution, compile=_compile_layers, batch=image_pairs
    ),
    "SuperResolution (SRGAN)": Family(
        make=srgan, compile=_compile_layers, batch=image_pairs
    ),
    "Diffusion": Family(make=diffusion, compile=_compile_one, batch=labelled_images),
}
