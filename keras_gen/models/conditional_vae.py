"""Conditional VAE (Sohn, Lee and Yan, 2015): the VAE with its labels fed to both networks."""

from typing import ClassVar

import tensorflow as tf

from keras_gen.models import base, conditioning
from keras_gen.models.vae import NETWORKS, VAE


@base.family
class ConditionalVAE(VAE):
    """VAE of p(x | y) and q(z | x, y) for labels y with one or more heads.

    Each head's label is one-hot coded; the encoder reads the codes as extra image
    channels (constant over the image), the decoder beside the latents. The rest is
    the VAE's: the posterior, prior, likelihood, the KL from `tfd.kl_divergence`,
    beta, `score` and the importance-weighted `negative_log_likelihood`, each given
    the conditions of every image (a class name or index per head, one for all
    images or one per image). Training batches are (images in [0, 1], labels int32
    (batch, heads)), one column per head in `conditions` order.

    Args:
        conditions: head -> class names, e.g. {"age": [...], "gender": [...]}; a
            label is the position of its name, and the order of the heads is the
            order of the label columns.
        **kwargs: the VAE's arguments: image_shape, latent_dim, filters,
            likelihood, beta, seed, network.

    Example:
        model = keras_gen.ConditionalVAE(
            keras_gen.data.class_names("faces"),
            image_shape=(64, 64, 3), likelihood="discretized_gaussian",
        )
        model.compile(optimizer="adam")
        model.fit(images, labels, batch_size=64, epochs=10)
        faces = model.generate(16, seed=0, age="65+", gender="female")
        nats = model.score(images, age=labels[:, 0], gender=labels[:, 1])
    """

    capabilities: ClassVar[frozenset[str]] = VAE.capabilities | {base.CONDITIONS}

    def __init__(self, conditions: dict, **kwargs):
        # Set before VAE.__init__, which builds the networks through the hooks.
        self.conditions = conditioning.checked_conditions(conditions)
        super().__init__(**kwargs)  # the VAE's arguments

    def _build_networks(self) -> tuple:
        height, width, channels = self.image_shape
        code_size = conditioning.code_size(self.conditions)
        build_encoder, build_decoder = NETWORKS[self.network]
        return (
            build_encoder(
                (height, width, channels + code_size), self.filters, self.latent_dim
            ),
            # The decoder reads the latents and the one-hot codes side by side.
            build_decoder(
                self._decoded_shape, self.filters, self.latent_dim + code_size
            ),
        )

    def _encoder_inputs(self, images, labels):
        codes = conditioning.one_hot(labels, self.conditions)
        planes = tf.broadcast_to(
            codes[:, None, None, :],
            tf.concat([tf.shape(images)[:3], [codes.shape[-1]]], 0),
        )
        return tf.concat([images, tf.cast(planes, images.dtype)], -1)

    def _decoder_inputs(self, latents, labels):
        return conditioning.beside_codes(latents, labels, self.conditions)
