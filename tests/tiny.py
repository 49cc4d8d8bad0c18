"""The tiny models every test trains: seconds on a CPU, same code paths as the real ones."""

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
    if isinstance(model, DCGAN):
        return (count, model.image_size, model.image_size, model.channels)
    return (count, *model.image_shape)
