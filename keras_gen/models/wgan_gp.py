"""WGAN-GP (Gulrajani et al., 2017): a Wasserstein critic kept 1-Lipschitz by a gradient penalty."""

from typing import ClassVar

import keras
import tensorflow as tf

from keras_gen import losses
from keras_gen.models import base
from keras_gen.models.dcgan import (
    _base_size,
    _init,
    build_generator,
    discriminator_body,
)

# Added under the square root of a gradient norm: the norm's gradient g / ||g|| is
# then finite, and zero, where the critic's gradient is zero (tf.norm gives NaN).
NORM_EPSILON = 1e-12


def build_critic(image_size: int, channels: int, filters: int) -> keras.Sequential:
    """Images in [-1, 1] -> one unbounded score: the DCGAN discriminator's convolutions.

    Layer normalization replaces batch normalization, as Gulrajani et al. advise:
    the penalty constrains the gradient of each example's score with respect to
    that example alone, which batch statistics would couple to the rest of the
    batch (and make depend on the replica count). GroupNormalization with one
    group is their layer norm: statistics over height, width and channels of each
    image, one scale and offset per channel.
    """
    size, _ = _base_size(image_size)
    layers = [
        keras.Input((image_size, image_size, channels)),
        *discriminator_body(
            image_size,
            filters,
            lambda: keras.layers.GroupNormalization(groups=1, epsilon=1e-5),
        ),
    ]
    layers += [
        # No bias: the critic's losses depend on score differences only, so a
        # bias would never receive a gradient.
        keras.layers.Conv2D(
            1,
            size,
            padding="valid",
            use_bias=False,
            kernel_initializer=_init(),
            dtype="float32",
        ),
        # float32 too: a mixed-precision Flatten would cast the scores to float16.
        keras.layers.Flatten(dtype="float32"),
    ]
    return keras.Sequential(layers, name="critic")


def wasserstein_critic_losses(real_scores, fake_scores) -> tf.Tensor:
    """Per-example D(G(z)) - D(x), from scores of shape (batch, 1)."""
    return fake_scores[:, 0] - real_scores[:, 0]


def wasserstein_generator_losses(fake_scores) -> tf.Tensor:
    """Per-example -D(G(z)), from scores of shape (batch, 1)."""
    return -fake_scores[:, 0]


def gradient_penalties(critic, real, fake, epsilon, training=False) -> tf.Tensor:
    """Per-example (||grad D(x_hat)||_2 - 1)^2 at x_hat = epsilon * real + (1 - epsilon) * fake.

    Differentiable with respect to the critic's weights (call it under their
    tape), and finite where the critic's gradient is zero.
    """
    interpolates = tf.convert_to_tensor(epsilon * real + (1.0 - epsilon) * fake)
    with tf.GradientTape() as tape:
        tape.watch(interpolates)
        scores = critic(interpolates, training=training)
    # Each score depends on its own image only, so the gradient of their sum
    # holds every example's own gradient.
    gradients = tape.gradient(scores, interpolates)
    axes = list(range(1, len(gradients.shape)))
    norms = tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=axes) + NORM_EPSILON)
    return tf.square(norms - 1.0)


def replica_uniform(local_batch, shape, seed) -> tf.Tensor:
    """Uniform [0, 1) noise for this replica's rows of the global batch."""
    return base.replica_normal(
        local_batch, shape, seed, sampler=tf.random.stateless_uniform
    )


@keras.saving.register_keras_serializable(package="keras_gen")
class WGANGP(base.NetworkOptimizers, base.LatentGenerator, keras.Model):
    """Wasserstein GAN with gradient penalty (Gulrajani et al., 2017), their Algorithm 1.

    Each batch holds `num_critic_steps * m` images in [0, 1] (or `(images,
    anything)` tuples). The critic takes `num_critic_steps` updates, each on its
    own m real images with fresh noise, then the generator takes one update on m
    latents. Share i is every num_critic_steps-th image from image i, so under
    tf.distribute the replicas' shares of step i are together exactly the
    images one device would use. The generator is DCGAN's; the critic is DCGAN's
    discriminator with layer norm for batch norm (see `build_critic`) and a
    linear output.

    Logs `critic_loss` (penalty included), `generator_loss`, `gradient_penalty`
    (unweighted, (||grad|| - 1)^2) and `wasserstein_distance` (mean D(x) -
    D(G(z)), the critic's estimate: it rises while the critic learns, then
    should fall as the generator improves).

    Args:
        image_size: side of the square images; 28, 32 and 64 all work.
        channels: 1 for grayscale, 3 for RGB.
        latent_dim: size of the generator's input noise.
        generator_filters: width of the generator's last hidden layer; the
            layers before it double it.
        critic_filters: width of the critic's first layer.
        num_critic_steps: critic updates per generator update; the batch size
            must be a multiple of it.
        gradient_penalty_weight: lambda, the weight of the gradient penalty.
        seed: fixes the training noise: step t draws the same latents whatever
            the number of replicas.

    Example:
        model = keras_gen.models.WGANGP(image_size=28, channels=1)
        model.compile()  # Adam(1e-4, beta_1=0, beta_2=0.9) for each network
        batches = keras_gen.data.load("mnist", batch_size=5 * 64, drop_remainder=True)
        model.fit(batches, epochs=5)
        images = model.generate(16, seed=0)
    """

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 3,
        latent_dim: int = 100,
        generator_filters: int = 64,
        critic_filters: int = 64,
        num_critic_steps: int = 5,
        gradient_penalty_weight: float = 10.0,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_critic_steps) != num_critic_steps or num_critic_steps < 1:
            raise ValueError(
                f"num_critic_steps must be a whole number of at least 1, got "
                f"{num_critic_steps}; Gulrajani et al. use 5."
            )
        if gradient_penalty_weight < 0:
            raise ValueError(
                f"gradient_penalty_weight must be >= 0, got {gradient_penalty_weight}; "
                "Gulrajani et al. use 10."
            )
        self.image_size = image_size
        self.channels = channels
        self.latent_dim = latent_dim
        self.generator_filters = generator_filters
        self.critic_filters = critic_filters
        self.num_critic_steps = num_critic_steps
        self.gradient_penalty_weight = gradient_penalty_weight
        self.seed = seed
        self.generator = build_generator(
            latent_dim, image_size, channels, generator_filters
        )
        self.critic = build_critic(image_size, channels, critic_filters)
        self.critic_loss_tracker = keras.metrics.Mean(name="critic_loss")
        self.generator_loss_tracker = keras.metrics.Mean(name="generator_loss")
        self.gradient_penalty_tracker = keras.metrics.Mean(name="gradient_penalty")
        self.wasserstein_distance_tracker = keras.metrics.Mean(
            name="wasserstein_distance"
        )
        self.generator_optimizer = None
        self.critic_optimizer = None
        self.build()

    def build(self, input_shape=None):
        # fit() never calls the model itself, so it would never build it; both
        # networks are built on creation and the model is built with them.
        self.built = True

    def get_config(self):
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "channels": self.channels,
            "latent_dim": self.latent_dim,
            "generator_filters": self.generator_filters,
            "critic_filters": self.critic_filters,
            "num_critic_steps": self.num_critic_steps,
            "gradient_penalty_weight": self.gradient_penalty_weight,
            "seed": self.seed,
        }

    network_optimizers: ClassVar[dict[str, str]] = {
        "generator_optimizer": "generator",
        "critic_optimizer": "critic",
    }

    def compile(
        self,
        generator_optimizer: keras.optimizers.Optimizer | str | None = None,
        critic_optimizer: keras.optimizers.Optimizer | str | None = None,
        **kwargs,
    ):
        """Set one optimizer per network (default: Adam(1e-4, beta_1=0, beta_2=0.9) each).

        Those are the paper's: no momentum in the first moment, which they found
        to destabilise the critic.
        """
        self._compile_networks(
            {
                "generator_optimizer": generator_optimizer,
                "critic_optimizer": critic_optimizer,
            },
            lambda name: keras.optimizers.Adam(1e-4, beta_1=0.0, beta_2=0.9, name=name),
            **kwargs,
        )

    @property
    def metrics(self):
        return [
            self.critic_loss_tracker,
            self.generator_loss_tracker,
            self.gradient_penalty_tracker,
            self.wasserstein_distance_tracker,
        ]

    def train_step(self, data):
        real_batches = self._critic_batches(base.images(data) * 2.0 - 1.0)
        batch = tf.shape(real_batches[0])[0]
        critic_weights = self.critic.trainable_variables
        generator_weights = self.generator.trainable_variables

        for real in real_batches:
            # 1. Draw fresh noise and interpolation weights for this critic step.
            step = self.critic_optimizer.iterations
            latents = base.replica_normal(
                batch, [self.latent_dim], base.step_seed(self.seed, step, 0)
            )
            epsilon = replica_uniform(
                batch, [1] * (len(real.shape) - 1), base.step_seed(self.seed, step, 1)
            )
            fake = self.generator(latents, training=True)

            # 2. Update the critic: Wasserstein loss plus the gradient penalty.
            with tf.GradientTape() as critic_tape:
                real_scores = self.critic(real, training=True)
                fake_scores = self.critic(fake, training=True)
                penalties = gradient_penalties(
                    self.critic, real, fake, epsilon, training=True
                )
                critic_losses = self._critic_losses(real_scores, fake_scores, penalties)
                critic_loss = self.critic_optimizer.scale_loss(
                    losses.average_over_global_batch(critic_losses)
                )
            gradients = critic_tape.gradient(critic_loss, critic_weights)
            self.critic_optimizer.apply_gradients(zip(gradients, critic_weights))
            self._track_critic(critic_losses, penalties, real_scores, fake_scores)

        # 3. Update the generator once, on fresh noise, against the updated critic.
        latents = base.replica_normal(
            batch,
            [self.latent_dim],
            base.step_seed(self.seed, self.generator_optimizer.iterations, 2),
        )
        with tf.GradientTape() as generator_tape:
            fake_scores = self.critic(
                self.generator(latents, training=True), training=True
            )
            generator_losses = wasserstein_generator_losses(fake_scores)
            generator_loss = self.generator_optimizer.scale_loss(
                losses.average_over_global_batch(generator_losses)
            )
        gradients = generator_tape.gradient(generator_loss, generator_weights)
        self.generator_optimizer.apply_gradients(zip(gradients, generator_weights))
        self.generator_loss_tracker.update_state(generator_losses)
        return base.logs(self.metrics)

    def test_step(self, data):
        real = base.images(data) * 2.0 - 1.0
        batch = tf.shape(real)[0]
        latents = base.replica_normal(
            batch, [self.latent_dim], base.step_seed(self.seed, -1, 0)
        )
        epsilon = replica_uniform(
            batch, [1] * (len(real.shape) - 1), base.step_seed(self.seed, -1, 1)
        )
        fake = self.generator(latents)
        real_scores = self.critic(real)
        fake_scores = self.critic(fake)
        penalties = gradient_penalties(self.critic, real, fake, epsilon)
        self._track_critic(
            self._critic_losses(real_scores, fake_scores, penalties),
            penalties,
            real_scores,
            fake_scores,
        )
        self.generator_loss_tracker.update_state(
            wasserstein_generator_losses(fake_scores)
        )
        return base.logs(self.metrics)

    def _critic_batches(self, real):
        """The batch split into num_critic_steps equal shares, share i = real[i::steps]."""
        steps = self.num_critic_steps
        size = real.shape[0]
        advice = (
            f"WGANGP takes num_critic_steps={steps} critic steps per batch, each on an "
            f"equal share of its images, so the batch size (per replica under "
            f"tf.distribute) must be a multiple of {steps}. Use a batch size such as "
            f"{steps * 64} ({steps} * 64), and drop a last partial batch that is not."
        )
        if size is not None:
            if size % steps:
                raise ValueError(f"{advice} Got a batch of {size}.")
            return [real[i::steps] for i in range(steps)]
        # The size is only known when the step runs: check it then.
        check = tf.debugging.assert_equal(tf.shape(real)[0] % steps, 0, message=advice)
        with tf.control_dependencies([check]):
            return [real[i::steps] for i in range(steps)]

    def _critic_losses(self, real_scores, fake_scores, penalties):
        return (
            wasserstein_critic_losses(real_scores, fake_scores)
            + self.gradient_penalty_weight * penalties
        )

    def _track_critic(self, critic_losses, penalties, real_scores, fake_scores):
        self.critic_loss_tracker.update_state(critic_losses)
        self.gradient_penalty_tracker.update_state(penalties)
        self.wasserstein_distance_tracker.update_state(
            real_scores[:, 0] - fake_scores[:, 0]
        )
