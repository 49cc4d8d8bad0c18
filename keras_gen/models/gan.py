"""What every GAN shares: a generator from latents to tanh images, one optimizer per
network, and optionally the generator's moving average, which samples."""

from typing import ClassVar

import keras
import tensorflow as tf

from keras_gen import losses
from keras_gen.models import base, ema, noise


class GAN(base.NetworkOptimizers, base.LatentFamily):
    """The generator half of a GAN, and compile state for one optimizer per network.

    A subclass builds `generator` (latents -> images in the tanh range [-1, 1])
    and its other networks, then calls `_start_generator_average`; it lists
    `network_optimizers` (optimizer attribute -> network attribute), gives
    `compile` its optimizers' names and defaults through `_compile_networks` (see
    `base.NetworkOptimizers`), and calls `_update_generator_average` after each
    generator update.

    With `generator_ema_decay` set, the model keeps `ema_generator`, an
    exponential moving average of the generator's weights (Yazıcı et al. 2019),
    which generates, decodes, evaluates and exports; both are saved, and
    fine-tuning resumes the trained `generator`. None (the default) keeps no
    average: the model's weights are the networks' alone.

    Args:
        image_size: side of the square images; 28, 32 and 64 all work.
        channels: 1 for grayscale, 3 for RGB.
        latent_dim: size of the generator's input noise.
        seed: fixes the training noise: step t draws the same latents whatever
            the number of replicas.
        generator_ema_decay: decay of the generator's moving average per
            generator step (with the warm-up min(decay, (1 + n) / (10 + n)) at
            step n), e.g. 0.999; None for no average.
        truncation: `generate`'s and the exported `sample`'s default truncation
            (see `generate`); None samples the latents the generator trained on.
    """

    network_optimizers: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        *,
        image_size: int = 64,
        channels: int = 3,
        latent_dim: int = 100,
        seed: int = 0,
        generator_ema_decay: float | None = None,
        truncation: float | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        ema.check_decay("generator_ema_decay", generator_ema_decay, optional=True)
        noise.check_truncation(truncation)
        self.truncation = truncation
        self.image_size = image_size
        self.channels = channels
        self.latent_dim = latent_dim
        self.seed = seed
        self.generator_ema_decay = generator_ema_decay
        for optimizer in self.network_optimizers:
            setattr(self, optimizer, None)  # set by compile

    def generate(
        self,
        num_samples: int,
        seed: int | None = None,
        truncation: float | None = None,
        **conditions,
    ) -> tf.Tensor:
        """`num_samples` float32 images in [0, 1]; the same seed gives the same images.

        truncation: draw each latent from N(0, 1) truncated to [-truncation,
            truncation] (the truncation trick, Brock et al. 2019): samples more
            typical of what the generator does best, and less diverse. Default:
            the model's `truncation`; math.inf turns it off.
        Conditions as the shared contract takes them (see `base.Family.generate`).
        """
        noise.check_truncation(truncation)
        num_samples, labels = self._sampling_request(num_samples, conditions)
        return self._sample(num_samples, seed, labels, truncation)

    def _sample(self, num_samples, seed, labels, truncation=None) -> tf.Tensor:
        """The latent family's samples, truncated at `truncation` or the model's."""
        truncation = self.truncation if truncation is None else truncation
        return super()._sample(num_samples, seed, labels, truncation)

    def _start_generator_average(self) -> None:
        """Keep `ema_generator`, a frozen copy of the built generator, if asked to."""
        self.ema_generator = (
            None
            if self.generator_ema_decay is None
            else ema.frozen_copy(self.generator, "ema_generator")
        )

    def _update_generator_average(self) -> None:
        """The moving average (if kept) follows the generator's updated weights."""
        if self.ema_generator is not None:
            ema.update(
                self.ema_generator,
                self.generator,
                self.generator_ema_decay,
                self.generator_optimizer.iterations,
            )

    @property
    def sampling_generator(self) -> keras.Model:
        """The generator that samples, evaluates and exports: the average if kept."""
        if self.ema_generator is None:
            return self.generator
        return self.ema_generator

    def call(self, inputs, training=False):
        """Images in [0, 1] of the sampling generator for latents (a conditional GAN:
        (latents, labels)).

        Unclipped, unlike decode.
        """
        latents, labels = self._call_inputs(inputs)
        images = self._generate(latents, labels, training, self.sampling_generator)
        return _unit_range(images)

    def _generate(self, latents, labels, training, generator=None):
        """Images in the tanh range [-1, 1] of `generator` (the trained one if None)."""
        generator = self.generator if generator is None else generator
        return generator(self._generator_inputs(latents, labels), training=training)

    def _generator_inputs(self, latents, labels):
        """What the generator reads; a conditional subclass adds its labels."""
        return latents

    def _tanh_batch(self, data) -> tuple:
        """(real images moved to the generator's tanh range, labels) of a training batch."""
        real, labels = self._batch(data)
        return real * 2.0 - 1.0, labels

    def _decode(self, latents, labels) -> tf.Tensor:
        images = self._generate(latents, labels, False, self.sampling_generator)
        return tf.clip_by_value(_unit_range(images), 0.0, 1.0)

    def serving_endpoints(self) -> dict:
        """Functions and input signatures that keras_gen.export writes, by name.

        "generate" takes latents (batch, latent_dim) (and a conditional GAN's labels
        (batch, heads)); "sample" draws them. The first is also `serving_default`.
        """
        return {"generate": self._decode_endpoint(), "sample": self._sample_endpoint()}


class AdversarialUpdates(base.NetworkOptimizers):
    """A generator's and a discriminator's non-saturating updates (Goodfellow et al.
    2014), each network with its own optimizer (a mixin).

    Shared by NonSaturatingGAN, Pix2Pix and SuperResolution's adversarial mode. A
    family builds `generator` and `discriminator` (-> logits, one per image or
    one per patch, in a tensor whose first axis is the batch), and may feed the
    discriminator a condition beside the images (`_discriminator_inputs`): class
    labels, or the input image of an image-to-image model.
    """

    network_optimizers: ClassVar[dict[str, str]] = {
        "generator_optimizer": "generator",
        "discriminator_optimizer": "discriminator",
    }
    # Pix2Pix halves the discriminator's loss, so that it learns slower than the generator.
    discriminator_loss_weight: ClassVar[float] = 1.0

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

    def _discriminator_inputs(self, images, condition):
        """What the discriminator reads; a conditional family adds its condition."""
        return images

    def _discriminate(self, images, condition, training=False):
        """Logits of images in the tanh range (given the condition, if any)."""
        return self.discriminator(
            self._discriminator_inputs(images, condition), training=training
        )

    def _update_discriminator(self, real, fake, condition) -> tuple:
        """One discriminator step; (per-example losses, real logits, fake logits)."""
        weights = self.discriminator.trainable_variables
        with tf.GradientTape() as tape:
            real_logits = self._discriminate(real, condition, training=True)
            fake_logits = self._discriminate(fake, condition, training=True)
            per_example = losses.gan_discriminator_losses(real_logits, fake_logits)
            loss = losses.average_over_global_batch(
                self.discriminator_loss_weight * per_example
            )
            loss = self.discriminator_optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, weights)
        self.discriminator_optimizer.apply_gradients(zip(gradients, weights))
        return per_example, real_logits, fake_logits

    def _track_losses(
        self, discriminator_losses, generator_losses, real_logits, fake_logits
    ):
        """fit's logs; `generator_losses` are per-example losses, or a dict of them
        by name (Pix2Pix: its adversarial and L1 terms)."""
        if not isinstance(generator_losses, dict):
            generator_losses = {"generator_loss": generator_losses}
        return self._track(
            **generator_losses,
            discriminator_loss=discriminator_losses,
            d_real=tf.sigmoid(real_logits),
            d_fake=tf.sigmoid(fake_logits),
        )

    def _update_generator(self, generator_tape, fake, losses_of):
        """One generator step through the images `generator_tape` recorded.

        `losses_of(fake)` returns (per-example loss, what to track: those losses,
        or a dict of per-example values by name); this returns the latter. The chain rule is taken in two steps
        (loss -> images -> generator weights), so no tape stays open across the
        discriminator's update and its cross-replica reductions.
        """
        weights = self.generator.trainable_variables
        with tf.GradientTape() as image_tape:
            image_tape.watch(fake)
            per_example, tracked = losses_of(fake)
            loss = losses.average_over_global_batch(per_example)
            loss = self.generator_optimizer.scale_loss(loss)
        gradients = generator_tape.gradient(
            fake, weights, output_gradients=image_tape.gradient(loss, fake)
        )
        self.generator_optimizer.apply_gradients(zip(gradients, weights))
        return tracked


class NonSaturatingGAN(AdversarialUpdates, GAN):
    """The original GAN's algorithm (Goodfellow et al. 2014), non-saturating loss.

    Trains on images in [0, 1] (batches of images, or `(images, anything)`
    tuples), one discriminator and one generator update per batch, each network
    with its own optimizer (`AdversarialUpdates`). A family writes
    `_build_networks`; a conditional one also `_generator_inputs` and
    `_discriminator_inputs`.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)  # the GAN's arguments
        self.generator, self.discriminator = self._build_networks()
        self._start_generator_average()
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
        generator_losses = self._update_generator(
            generator_tape, fake, lambda images: self._generator_losses(images, labels)
        )

        # 4. The generator's moving average, if kept, follows its updated weights.
        self._update_generator_average()
        return self._track_losses(
            discriminator_losses, generator_losses, real_logits, fake_logits
        )

    def _generator_losses(self, fake, labels) -> tuple:
        """(per-example -log D(G(z)), the same): what the generator minimises and logs."""
        per_example = losses.gan_generator_losses(
            self._discriminate(fake, labels, training=True)
        )
        return per_example, per_example

    def test_step(self, data):
        """The losses of the sampling generator (what ships), on fixed latents."""
        real, labels = self._tanh_batch(data)
        seed = noise.step_seed(self.seed, -1, 0)
        latents = noise.replica_normal(tf.shape(real)[0], [self.latent_dim], seed)
        fake = self._generate(latents, labels, False, self.sampling_generator)
        real_logits = self._discriminate(real, labels)
        fake_logits = self._discriminate(fake, labels)
        return self._track_losses(
            losses.gan_discriminator_losses(real_logits, fake_logits),
            losses.gan_generator_losses(fake_logits),
            real_logits,
            fake_logits,
        )


def _unit_range(images):
    """tanh-range images [-1, 1] -> [0, 1]."""
    return (images + 1.0) / 2.0
