"""DCGAN (Radford, Metz and Chintala, 2016)."""

from typing import ClassVar

import keras
import tensorflow as tf

from keras_gen import losses
from keras_gen.models import base


def _init():
    # A new initializer per layer, made when the model is: seeded by
    # keras.utils.set_random_seed, and no two layers share a draw.
    return keras.initializers.RandomNormal(stddev=0.02)


def _base_size(image_size):
    """The side the generator starts from: halve while the result stays >= 4."""
    size, upsamplings = image_size, 0
    while size % 2 == 0 and size // 2 >= 4:
        size, upsamplings = size // 2, upsamplings + 1
    if upsamplings == 0:
        raise ValueError(
            f"image_size={image_size} cannot be reached by doubling from 4 or more; "
            "use a size such as 28, 32 or 64."
        )
    return size, upsamplings


def _batch_norm():
    # synchronized: under MirroredStrategy the statistics are those of the global
    # batch, so N replicas normalise exactly as one device would.
    return keras.layers.BatchNormalization(
        momentum=0.9,
        epsilon=1e-5,
        gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02),
        synchronized=True,
    )


def build_generator(
    latent_dim: int, image_size: int, channels: int, filters: int
) -> keras.Sequential:
    """Latents -> tanh images: dense to 4x4 (or 7x7), then stride-2 transposed convs."""
    size, upsamplings = _base_size(image_size)
    width = filters * 2 ** (upsamplings - 1)
    layers = [
        keras.Input((latent_dim,)),
        keras.layers.Dense(
            size * size * width, use_bias=False, kernel_initializer=_init()
        ),
        keras.layers.Reshape((size, size, width)),
        _batch_norm(),
        keras.layers.ReLU(),
    ]
    for i in range(upsamplings - 1):
        layers += [
            keras.layers.Conv2DTranspose(
                width // 2 ** (i + 1),
                4,
                strides=2,
                padding="same",
                use_bias=False,
                kernel_initializer=_init(),
            ),
            _batch_norm(),
            keras.layers.ReLU(),
        ]
    layers.append(
        keras.layers.Conv2DTranspose(
            channels,
            4,
            strides=2,
            padding="same",
            activation="tanh",
            dtype="float32",  # outputs stay float32 under a mixed-precision policy
            kernel_initializer=_init(),
        )
    )
    return keras.Sequential(layers, name="generator")


def discriminator_body(image_size: int, filters: int, normalization=None) -> list:
    """The layers DCGAN-style discriminators share: stride-2 4x4 convs doubling in
    width, each but the first normalized (Radford et al.: not the input layer),
    LeakyReLU. `normalization` makes a layer (default: synchronized batch norm)."""
    _, downsamplings = _base_size(image_size)
    layers = []
    for i in range(downsamplings):
        layers.append(
            keras.layers.Conv2D(
                filters * 2**i,
                4,
                strides=2,
                padding="same",
                use_bias=i == 0,
                kernel_initializer=_init(),
            )
        )
        if i > 0:
            layers.append((normalization or _batch_norm)())
        layers.append(keras.layers.LeakyReLU(0.2))
    return layers


def build_discriminator(
    image_size: int, channels: int, filters: int
) -> keras.Sequential:
    """Images in [-1, 1] -> one logit: `discriminator_body`, then a valid conv."""
    size, _ = _base_size(image_size)
    layers = [
        keras.Input((image_size, image_size, channels)),
        *discriminator_body(image_size, filters),
        keras.layers.Conv2D(
            1, size, padding="valid", kernel_initializer=_init(), dtype="float32"
        ),
        keras.layers.Flatten(dtype="float32"),  # or mixed precision casts back
    ]
    return keras.Sequential(layers, name="discriminator")


@keras.saving.register_keras_serializable(package="keras_gen")
class DCGAN(base.NetworkOptimizers, base.LatentGenerator, keras.Model):
    """Deep convolutional GAN (Radford, Metz and Chintala, 2016), non-saturating loss.

    Trains on images in [0, 1] (batches of images, or `(images, anything)`
    tuples), one discriminator and one generator update per batch, each network
    with its own optimizer.

    Args:
        image_size: side of the square images; 28, 32 and 64 all work.
        channels: 1 for grayscale, 3 for RGB.
        latent_dim: size of the generator's input noise.
        generator_filters: width of the generator's last hidden layer; the
            layers before it double it.
        discriminator_filters: width of the discriminator's first layer.
        seed: fixes the training noise: step t draws the same latents whatever
            the number of replicas.

    Example:
        model = keras_gen.DCGAN(image_size=28, channels=1)
        model.compile()  # Adam(2e-4, beta_1=0.5) for each network
        model.fit(keras_gen.data.load("mnist"), epochs=5)
        images = model.generate(16, seed=0)
    """

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 3,
        latent_dim: int = 100,
        generator_filters: int = 64,
        discriminator_filters: int = 64,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.channels = channels
        self.latent_dim = latent_dim
        self.generator_filters = generator_filters
        self.discriminator_filters = discriminator_filters
        self.seed = seed
        self.generator = build_generator(
            latent_dim, image_size, channels, generator_filters
        )
        self.discriminator = build_discriminator(
            image_size, channels, discriminator_filters
        )
        self.generator_loss_tracker = keras.metrics.Mean(name="generator_loss")
        self.discriminator_loss_tracker = keras.metrics.Mean(name="discriminator_loss")
        self.real_output_tracker = keras.metrics.Mean(name="d_real")
        self.fake_output_tracker = keras.metrics.Mean(name="d_fake")
        self.generator_optimizer = None
        self.discriminator_optimizer = None
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
            "discriminator_filters": self.discriminator_filters,
            "seed": self.seed,
        }

    network_optimizers: ClassVar[dict[str, str]] = {
        "generator_optimizer": "generator",
        "discriminator_optimizer": "discriminator",
    }

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

    @property
    def metrics(self):
        return [
            self.generator_loss_tracker,
            self.discriminator_loss_tracker,
            self.real_output_tracker,
            self.fake_output_tracker,
        ]

    def train_step(self, data):
        real = base.images(data) * 2.0 - 1.0  # the generator's tanh range
        seed = base.step_seed(self.seed, self.discriminator_optimizer.iterations, 0)
        latents = base.replica_normal(tf.shape(real)[0], [self.latent_dim], seed)
        generator_weights = self.generator.trainable_variables
        discriminator_weights = self.discriminator.trainable_variables

        # 1. Generate once; this pass serves both updates, as in the reference DCGAN.
        with tf.GradientTape() as generator_tape:
            fake = self.generator(latents, training=True)

        # 2. Update the discriminator on real and generated images.
        with tf.GradientTape() as discriminator_tape:
            real_logits = self.discriminator(real, training=True)
            fake_logits = self.discriminator(fake, training=True)
            discriminator_losses = losses.gan_discriminator_losses(
                real_logits, fake_logits
            )
            discriminator_loss = losses.average_over_global_batch(discriminator_losses)
            discriminator_loss = self.discriminator_optimizer.scale_loss(
                discriminator_loss
            )
        gradients = discriminator_tape.gradient(
            discriminator_loss, discriminator_weights
        )
        self.discriminator_optimizer.apply_gradients(
            zip(gradients, discriminator_weights)
        )

        # 3. Update the generator against the updated discriminator. The chain rule
        # is taken in two steps (loss -> images -> generator weights) so no tape stays
        # open across the discriminator's update and its cross-replica reductions.
        with tf.GradientTape() as image_tape:
            image_tape.watch(fake)
            generator_losses = losses.gan_generator_losses(
                self.discriminator(fake, training=True)
            )
            generator_loss = losses.average_over_global_batch(generator_losses)
            generator_loss = self.generator_optimizer.scale_loss(generator_loss)
        gradients = generator_tape.gradient(
            fake,
            generator_weights,
            output_gradients=image_tape.gradient(generator_loss, fake),
        )
        self.generator_optimizer.apply_gradients(zip(gradients, generator_weights))
        return self._track(
            discriminator_losses, generator_losses, real_logits, fake_logits
        )

    def test_step(self, data):
        real = base.images(data) * 2.0 - 1.0
        batch = tf.shape(real)[0]
        seed = base.step_seed(self.seed, -1, 0)
        fake = self.generator(base.replica_normal(batch, [self.latent_dim], seed))
        real_logits = self.discriminator(real)
        fake_logits = self.discriminator(fake)
        return self._track(
            losses.gan_discriminator_losses(real_logits, fake_logits),
            losses.gan_generator_losses(fake_logits),
            real_logits,
            fake_logits,
        )

    def _track(self, discriminator_losses, generator_losses, real_logits, fake_logits):
        self.discriminator_loss_tracker.update_state(discriminator_losses)
        self.generator_loss_tracker.update_state(generator_losses)
        self.real_output_tracker.update_state(tf.sigmoid(real_logits))
        self.fake_output_tracker.update_state(tf.sigmoid(fake_logits))
        return base.logs(self.metrics)
