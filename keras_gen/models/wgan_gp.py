"""WGAN-GP (Gulrajani et al., 2017): a Wasserstein critic kept 1-Lipschitz by a gradient penalty."""

from typing import ClassVar

import keras
import tensorflow as tf

from keras_gen import losses
from keras_gen.models import base, gan, networks, noise


@base.family
class WGANGP(gan.GAN):
    """Wasserstein GAN with gradient penalty (Gulrajani et al., 2017), their Algorithm 1.

    Each batch holds `num_critic_steps * m` images in [0, 1] (or `(images,
    anything)` tuples). The critic takes `num_critic_steps` updates, each on its
    own m real images with fresh noise, then the generator takes one update on m
    latents. Share i is every num_critic_steps-th image from image i, so under
    tf.distribute the replicas' shares of step i are together exactly the
    images one device would use. The generator is DCGAN's; the critic is DCGAN's
    discriminator with layer norm for batch norm (see `networks.build_critic`) and
    a linear output.

    Logs `critic_loss` (penalty included), `generator_loss`, `gradient_penalty`
    (unweighted, (||grad|| - 1)^2) and `wasserstein_distance` (mean D(x) -
    D(G(z)), the critic's estimate: it rises while the critic learns, then
    should fall as the generator improves).

    Args:
        generator_filters: width of the generator's last hidden layer (DCGAN's).
        critic_filters: width of the critic's first layer.
        num_critic_steps: critic updates per generator update; the batch size
            must be a multiple of it.
        gradient_penalty_weight: lambda, the weight of the gradient penalty.
        **kwargs: the arguments every GAN takes (`gan.GAN`): image_size,
            channels, latent_dim, seed, generator_ema_decay, truncation.

    Example:
        model = keras_gen.models.WGANGP(image_size=28, channels=1)
        model.compile()  # Adam(1e-4, beta_1=0, beta_2=0.9) for each network
        batches = keras_gen.data.load("mnist", batch_size=5 * 64, drop_remainder=True)
        model.fit(batches, epochs=5)
        images = model.generate(16, seed=0)
    """

    network_optimizers: ClassVar[dict[str, str]] = {
        "generator_optimizer": "generator",
        "critic_optimizer": "critic",
    }

    def __init__(
        self,
        *,
        generator_filters: int = 64,
        critic_filters: int = 64,
        num_critic_steps: int = 5,
        gradient_penalty_weight: float = 10.0,
        **kwargs,
    ):
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
        super().__init__(**kwargs)  # the GAN's arguments
        self.generator_filters = generator_filters
        self.critic_filters = critic_filters
        self.num_critic_steps = num_critic_steps
        self.gradient_penalty_weight = gradient_penalty_weight
        self.generator = networks.build_generator(
            self.latent_dim, self.image_size, self.channels, self.generator_filters
        )
        self._start_generator_average()
        self.critic = networks.build_critic(
            self.image_size, self.channels, critic_filters
        )
        self.trackers = base.mean_trackers(
            "critic_loss", "generator_loss", "gradient_penalty", "wasserstein_distance"
        )
        self.build()

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

    def decay_windows(self, steps: int) -> dict[str, tuple[int, int]]:
        """The critic updates num_critic_steps times a step."""
        return {"critic_optimizer": (0, steps * self.num_critic_steps)}

    def train_step(self, data):
        real, _ = self._tanh_batch(data)
        real_batches = self._critic_batches(real)
        batch = tf.shape(real_batches[0])[0]
        for real in real_batches:
            self._critic_step(real, batch)

        # 3. Update the generator once, on fresh noise, against the updated critic.
        weights = self.generator.trainable_variables
        latents = noise.replica_normal(
            batch,
            [self.latent_dim],
            noise.step_seed(self.seed, self.generator_optimizer.iterations, 2),
        )
        with tf.GradientTape() as tape:
            fake_scores = self.critic(
                self.generator(latents, training=True), training=True
            )
            generator_losses = losses.wasserstein_generator_losses(fake_scores)
            loss = self.generator_optimizer.scale_loss(
                losses.average_over_global_batch(generator_losses)
            )
        gradients = tape.gradient(loss, weights)
        self.generator_optimizer.apply_gradients(zip(gradients, weights))

        # 4. The generator's moving average, if kept, follows its updated weights.
        self._update_generator_average()
        return self._track(generator_loss=generator_losses)

    def _critic_step(self, real, batch):
        """Steps 1 and 2 of the paper's loop, on one share of the batch."""
        # 1. Draw fresh noise and interpolation weights for this critic step.
        step = self.critic_optimizer.iterations
        latents, epsilon = self._critic_noise(real, batch, step)
        fake = self.generator(latents, training=True)

        # 2. Update the critic: Wasserstein loss plus the gradient penalty.
        weights = self.critic.trainable_variables
        with tf.GradientTape() as tape:
            real_scores = self.critic(real, training=True)
            fake_scores = self.critic(fake, training=True)
            penalties = losses.gradient_penalties(
                self.critic, real, fake, epsilon, training=True
            )
            critic_losses = self._critic_losses(real_scores, fake_scores, penalties)
            loss = self.critic_optimizer.scale_loss(
                losses.average_over_global_batch(critic_losses)
            )
        gradients = tape.gradient(loss, weights)
        self.critic_optimizer.apply_gradients(zip(gradients, weights))
        self._track_critic(critic_losses, penalties, real_scores, fake_scores)

    def _critic_noise(self, real, batch, step) -> tuple:
        """(latents, interpolation weights epsilon) of one critic step (-1: evaluation)."""
        latents = noise.replica_normal(
            batch, [self.latent_dim], noise.step_seed(self.seed, step, 0)
        )
        epsilon = noise.replica_uniform(
            batch, [1] * (len(real.shape) - 1), noise.step_seed(self.seed, step, 1)
        )
        return latents, epsilon

    def test_step(self, data):
        """The losses of the sampling generator (what ships), on fixed noise."""
        real, _ = self._tanh_batch(data)
        latents, epsilon = self._critic_noise(real, tf.shape(real)[0], -1)
        fake = self.sampling_generator(latents)
        real_scores = self.critic(real)
        fake_scores = self.critic(fake)
        penalties = losses.gradient_penalties(self.critic, real, fake, epsilon)
        self._track_critic(
            self._critic_losses(real_scores, fake_scores, penalties),
            penalties,
            real_scores,
            fake_scores,
        )
        return self._track(
            generator_loss=losses.wasserstein_generator_losses(fake_scores)
        )

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
            losses.wasserstein_critic_losses(real_scores, fake_scores)
            + self.gradient_penalty_weight * penalties
        )

    def _track_critic(self, critic_losses, penalties, real_scores, fake_scores):
        self._track(
            critic_loss=critic_losses,
            gradient_penalty=penalties,
            wasserstein_distance=real_scores[:, 0] - fake_scores[:, 0],
        )
