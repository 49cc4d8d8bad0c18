"""DCGAN (Radford, Metz and Chintala, 2016)."""

from typing import ClassVar

import keras
import tensorflow as tf

from keras_gen import losses
from keras_gen.models import base, gan, networks, noise


@base.family
class DCGAN(gan.GAN):
    """Deep convolutional GAN (Radford, Metz and Chintala, 2016), non-saturating loss.

    Trains on images in [0, 1] (batches of images, or `(images, anything)`
    tuples), one discriminator and one generator update per batch, each network
    with its own optimizer. A conditional variant changes the hooks
    `_build_networks`, `_generator_inputs` and `_discriminator_inputs` only.

    Args:
        discriminator_filters: width of the discriminator's first layer.
        **kwargs: the arguments every GAN takes (`gan.GAN`): image_size,
            channels, latent_dim, generator_filters, seed.

    Example:
        model = keras_gen.DCGAN(image_size=28, channels=1)
        model.compile()  # Adam(2e-4, beta_1=0.5) for each network
        model.fit(keras_gen.data.load("mnist"), epochs=5)
        images = model.generate(16, seed=0)
    """

    network_optimizers: ClassVar[dict[str, str]] = {
        "generator_optimizer": "generator",
        "discriminator_optimizer": "discriminator",
    }

    def __init__(self, *, discriminator_filters: int = 64, **kwargs):
        super().__init__(**kwargs)  # the GAN's arguments
        self.discriminator_filters = discriminator_filters
        self.generator, self.discriminator = self._build_networks()
        # d_real and d_fake: the discriminator's mean probability that an image is real.
        self.trackers = base.mean_trackers(
            "generator_loss", "discriminator_loss", "d_real", "d_fake"
        )
        self.build()

    def _build_networks(self) -> tuple:
        """The generator and discriminator; a conditional subclass widens them."""
        return (
            networks.build_generator(
                self.latent_dim, self.image_size, self.channels, self.generator_filters
            ),
            networks.build_discriminator(
                self.image_size, self.channels, self.discriminator_filters
            ),
        )

    def _discriminator_inputs(self, images, labels):
        """What the discriminator reads; a conditional subclass adds its labels."""
        return images

    def compile(
        self,
        generator_optimizer: keras.optimizers.Optimizer | str | None = None,
        discriminator_optimizer: keras.optimizers.Optimizer | str | None = None,
        **kwargs,
    ):
        """Set one optimizer per network (default: Adam(2e-4, beta_1=0.5) each)."""
        self._compile_networks(
            {
                "generator_optimizer": generator_optimizer,
                "discriminator_optimizer": discriminator_optimizer,
            },
            lambda name: keras.optimizers.Adam(2e-4, beta_1=0.5),
            **kwargs,
        )

    def train_step(self, data):
        real, labels = self._tanh_batch(data)
        seed = noise.step_seed(self.seed, self.discriminator_optimizer.iterations, 0)
        latents = noise.replica_normal(tf.shape(real)[0], [self.latent_dim], seed)

        # 1. Generate once, of the batch's classes if conditional; this pass serves
        # both updates, as in the reference DCGAN.
        with tf.GradientTape() as generator_tape:
            fake = self._generate(latents, labels, training=True)

        # 2. Update the discriminator on real and generated images.
        discriminator_losses, real_logits, fake_logits = self._update_discriminator(
            real, fake, labels
        )

        # 3. Update the generator against the updated discriminator.
        generator_losses = self._update_generator(generator_tape, fake, labels)
        return self._track_losses(
            discriminator_losses, generator_losses, real_logits, fake_logits
        )

    def _discriminate(self, images, labels, training=False):
        """Logits (batch, 1) of images in the tanh range."""
        return self.discriminator(
            self._discriminator_inputs(images, labels), training=training
        )

    def _update_discriminator(self, real, fake, labels) -> tuple:
        """One discriminator step; (per-example losses, real logits, fake logits)."""
        weights = self.discriminator.trainable_variables
        with tf.GradientTape() as tape:
            real_logits = self._discriminate(real, labels, training=True)
            fake_logits = self._discriminate(fake, labels, training=True)
            per_example = losses.gan_discriminator_losses(real_logits, fake_logits)
            loss = losses.average_over_global_batch(per_example)
            loss = self.discriminator_optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, weights)
        self.discriminator_optimizer.apply_gradients(zip(gradients, weights))
        return per_example, real_logits, fake_logits

    def _update_generator(self, generator_tape, fake, labels) -> tf.Tensor:
        """One generator step through the images `generator_tape` recorded.

        The chain rule is taken in two steps (loss -> images -> generator weights),
        so no tape stays open across the discriminator's update and its
        cross-replica reductions. Returns the per-example losses.
        """
        weights = self.generator.trainable_variables
        with tf.GradientTape() as image_tape:
            image_tape.watch(fake)
            per_example = losses.gan_generator_losses(
                self._discriminate(fake, labels, training=True)
            )
            loss = losses.average_over_global_batch(per_example)
            loss = self.generator_optimizer.scale_loss(loss)
        gradients = generator_tape.gradient(
            fake, weights, output_gradients=image_tape.gradient(loss, fake)
        )
        self.generator_optimizer.apply_gradients(zip(gradients, weights))
        return per_example

    def test_step(self, data):
        real, labels = self._tanh_batch(data)
        seed = noise.step_seed(self.seed, -1, 0)
        latents = noise.replica_normal(tf.shape(real)[0], [self.latent_dim], seed)
        fake = self._generate(latents, labels, training=False)
        real_logits = self._discriminate(real, labels)
        fake_logits = self._discriminate(fake, labels)
        return self._track_losses(
            losses.gan_discriminator_losses(real_logits, fake_logits),
            losses.gan_generator_losses(fake_logits),
            real_logits,
            fake_logits,
        )

    def _track_losses(
        self, discriminator_losses, generator_losses, real_logits, fake_logits
    ):
        return self._track(
            discriminator_loss=discriminator_losses,
            generator_loss=generator_losses,
            d_real=tf.sigmoid(real_logits),
            d_fake=tf.sigmoid(fake_logits),
        )
