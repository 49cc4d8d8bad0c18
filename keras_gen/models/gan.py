"""What every GAN shares: a generator from latents to tanh images, one optimizer per network."""

from typing import ClassVar

import keras
import tensorflow as tf

from keras_gen import losses
from keras_gen.models import base, noise


class GAN(base.LatentFamily):
    """The generator half of a GAN, and compile state for one optimizer per network.

    A subclass builds `generator` (latents -> images in the tanh range [-1, 1])
    and its other networks, lists `network_optimizers` (optimizer attribute ->
    network attribute), and gives `compile` its optimizers' names and defaults
    through `_compile_networks`. The compile config then round-trips, so a
    reloaded .keras file comes back compiled.

    Args:
        image_size: side of the square images; 28, 32 and 64 all work.
        channels: 1 for grayscale, 3 for RGB.
        latent_dim: size of the generator's input noise.
        seed: fixes the training noise: step t draws the same latents whatever
            the number of replicas.
    """

    network_optimizers: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        *,
        image_size: int = 64,
        channels: int = 3,
        latent_dim: int = 100,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.channels = channels
        self.latent_dim = latent_dim
        self.seed = seed
        for optimizer in self.network_optimizers:
            setattr(self, optimizer, None)  # set by compile

    def call(self, inputs, training=False):
        """Images in [0, 1] for latents (a conditional GAN: (latents, labels)).

        Unclipped, unlike decode.
        """
        latents, labels = self._call_inputs(inputs)
        return _unit_range(self._generate(latents, labels, training))

    def _generate(self, latents, labels, training):
        """Generated images in the generator's tanh range [-1, 1]."""
        return self.generator(
            self._generator_inputs(latents, labels), training=training
        )

    def _generator_inputs(self, latents, labels):
        """What the generator reads; a conditional subclass adds its labels."""
        return latents

    def _tanh_batch(self, data) -> tuple:
        """(real images moved to the generator's tanh range, labels) of a training batch."""
        real, labels = self._batch(data)
        return real * 2.0 - 1.0, labels

    def _decode(self, latents, labels) -> tf.Tensor:
        images = self._generate(latents, labels, training=False)
        return tf.clip_by_value(_unit_range(images), 0.0, 1.0)

    def serving_endpoints(self) -> dict:
        """Functions and input signatures that keras_gen.export writes, by name.

        "generate" takes latents (batch, latent_dim) (and a conditional GAN's labels
        (batch, heads)); "sample" draws them. The first is also `serving_default`.
        """
        return {"generate": self._decode_endpoint(), "sample": self._sample_endpoint()}

    def _compile_networks(self, chosen: dict, default, **kwargs):
        """Set each network's optimizer: `chosen[name]`, or `default(name)` if None."""
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


class NonSaturatingGAN(GAN):
    """The original GAN's algorithm (Goodfellow et al. 2014), non-saturating loss.

    Trains on images in [0, 1] (batches of images, or `(images, anything)`
    tuples), one discriminator and one generator update per batch, each network
    with its own optimizer. A family writes `_build_networks`; a conditional one
    also `_generator_inputs` and `_discriminator_inputs`.
    """

    network_optimizers: ClassVar[dict[str, str]] = {
        "generator_optimizer": "generator",
        "discriminator_optimizer": "discriminator",
    }

    def __init__(self, **kwargs):
        super().__init__(**kwargs)  # the GAN's arguments
        self.generator, self.discriminator = self._build_networks()
        # d_real and d_fake: the discriminator's mean probability that an image is real.
        self.trackers = base.mean_trackers(
            "generator_loss", "discriminator_loss", "d_real", "d_fake"
        )
        self.build()

    def _build_networks(self) -> tuple:
        """The generator (latents -> tanh images) and discriminator (-> one logit)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement _build_networks"
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


def _unit_range(images):
    """tanh-range images [-1, 1] -> [0, 1]."""
    return (images + 1.0) / 2.0
