"""Conditional VAE (Sohn, Lee and Yan, 2015): the VAE with its labels fed to both networks."""

import keras
import tensorflow as tf

from keras_gen.models import base
from keras_gen.models.vae import VAE, build_decoder, build_encoder

# generate(num_samples, seed, **conditions) takes these itself.
_RESERVED_HEADS = ("num_samples", "seed")


@keras.saving.register_keras_serializable(package="keras_gen")
class ConditionalVAE(VAE):
    """VAE of p(x | y) and q(z | x, y) for labels y with one or more heads.

    Each head's label is one-hot coded; the encoder reads the codes as extra image
    channels (constant over the image), the decoder beside the latents. The rest is
    the VAE's: the posterior, prior, likelihood, the KL from `tfd.kl_divergence`,
    beta, `score` and the importance-weighted `negative_log_likelihood`, all given
    `labels=` int32 (batch, heads), one column per head in `conditions` order.
    Training batches are (images in [0, 1], labels).

    Args:
        conditions: head -> class names, e.g. {"age": [...], "gender": [...]}; a
            label is the position of its name, and the order of the heads is the
            order of the label columns.
        image_shape: (height, width, channels); height and width divisible by
            2 ** len(filters).
        latent_dim: size of z.
        filters: widths of the encoder's stride-2 convolutions (the decoder mirrors them).
        likelihood: "bernoulli" for binarized images, "gaussian" for continuous ones.
        beta: weight of the KL term.
        seed: fixes the training noise, whatever the number of replicas.

    Example:
        model = keras_gen.ConditionalVAE(
            {head: list(names) for head, names in keras_gen.data.CLASSES["faces"].items()},
            image_shape=(64, 64, 3), likelihood="gaussian",
        )
        model.compile(optimizer="adam")
        model.fit(images, labels, batch_size=64, epochs=10)
        faces = model.generate(16, seed=0, age="65+", gender="female")
        nats = model.score(images, labels=labels)
    """

    def __init__(
        self,
        conditions: dict,
        image_shape: tuple[int, int, int] = (28, 28, 1),
        latent_dim: int = 16,
        filters: tuple[int, ...] = (32, 64),
        likelihood: str = "bernoulli",
        beta: float = 1.0,
        seed: int = 0,
        **kwargs,
    ):
        if not isinstance(conditions, dict) or not conditions:
            raise ValueError(
                "conditions must map each head to its class names, e.g. "
                f'{{"gender": ["female", "male"]}}; got {conditions!r}'
            )
        for head, names in conditions.items():
            if isinstance(names, str) or not names or len(set(names)) != len(names):
                raise ValueError(
                    f"conditions[{head!r}] must be a list of distinct class names, "
                    f"got {names!r}"
                )
            if head in _RESERVED_HEADS:
                raise ValueError(
                    f"a head cannot be named {head!r}: generate takes that argument"
                )
        # Set before VAE.__init__, which builds the networks through _build_networks.
        self.conditions = {
            str(head): tuple(str(name) for name in names)
            for head, names in conditions.items()
        }
        super().__init__(
            image_shape=image_shape,
            latent_dim=latent_dim,
            filters=filters,
            likelihood=likelihood,
            beta=beta,
            seed=seed,
            **kwargs,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "conditions": {
                head: list(names) for head, names in self.conditions.items()
            },
        }

    @property
    def _code_size(self):
        return sum(len(names) for names in self.conditions.values())

    def _build_networks(self):
        height, width, channels = self.image_shape
        return (
            build_encoder(
                (height, width, channels + self._code_size),
                self.filters,
                self.latent_dim,
            ),
            # The decoder reads the latents and the one-hot codes side by side.
            build_decoder(
                self.image_shape, self.filters, self.latent_dim + self._code_size
            ),
        )

    def _encoder_inputs(self, images, labels):
        codes = base.one_hot(
            self._checked(labels, tf.shape(images)[0]), self.conditions
        )
        planes = tf.broadcast_to(
            codes[:, None, None, :],
            tf.concat([tf.shape(images)[:3], [self._code_size]], 0),
        )
        return tf.concat([images, tf.cast(planes, images.dtype)], -1)

    def _decoder_inputs(self, latents, labels):
        codes = base.one_hot(
            self._checked(labels, tf.shape(latents)[0]), self.conditions
        )
        return tf.concat([latents, tf.cast(codes, latents.dtype)], -1)

    def _importance_log_weights(self, images, noise, labels=None):
        # Checked first: the labels are repeated once per importance sample.
        labels = self._checked(labels, tf.shape(images)[0])
        return super()._importance_log_weights(images, noise, labels=labels)

    def _checked(self, labels, count):
        if labels is None:
            raise ValueError(
                f"ConditionalVAE needs labels=, int32 (batch, {len(self.conditions)}) "
                f"for the heads {list(self.conditions)}"
            )
        return base.checked_labels(labels, self.conditions, count)

    def _batch(self, data):
        return base.labelled_batch(data, "ConditionalVAE")

    def call(self, inputs, training=False):
        """(images, labels) -> reconstructions, like reconstruct."""
        images, labels = inputs
        return self.reconstruct(images, labels=labels)

    def generate(
        self, num_samples: int, seed: int | None = None, **conditions
    ) -> tf.Tensor:
        """`num_samples` float32 images in [0, 1] decoded from prior samples.

        Each head is a class name or index for every sample, or one per sample,
        e.g. generate(16, seed=0, age="65+", gender="female"); heads not given
        cycle through their classes. The same seed gives the same images.
        """
        latents = base.standard_normal(num_samples, self.latent_dim, seed)
        labels = base.condition_indices(num_samples, self.conditions, conditions)
        return base.in_batches(
            lambda rows: self.decode(
                tf.gather(latents, rows), labels=tf.gather(labels, rows)
            ),
            tf.range(num_samples),
        )

    def serving_endpoints(self) -> dict:
        """Functions and input signatures that keras_gen.export writes, by name.

        Every endpoint takes labels int32 (batch, heads) beside its images or
        latents, except "sample", whose `labels` (heads,) is one combination for
        all samples: it gives what generate(num_samples, seed, head=index, ...)
        gives.
        Labels out of range fail the request. The first is also `serving_default`.
        """
        heads = len(self.conditions)
        latents = tf.TensorSpec([None, self.latent_dim], tf.float32, name="latents")
        images = tf.TensorSpec([None, *self.image_shape], tf.float32, name="images")
        labels = tf.TensorSpec([None, heads], tf.int32, name="labels")

        def encode(images, labels):
            posterior = self.encode(images, labels=labels)
            return {"mean": posterior.mean(), "stddev": posterior.stddev()}

        return {
            "decode": (
                lambda latents, labels: {"images": self.decode(latents, labels=labels)},
                [latents, labels],
            ),
            "encode": (encode, [images, labels]),
            "reconstruct": (
                lambda images, labels: {
                    "images": self.reconstruct(images, labels=labels)
                },
                [images, labels],
            ),
            "score": (
                lambda images, labels: {
                    "negative_elbo": self.score(images, labels=labels)
                },
                [images, labels],
            ),
            "sample": base.conditional_sample_endpoint(
                self.latent_dim,
                lambda latents, labels: self.decode(latents, labels=labels),
                heads,
            ),
        }
