"""The multilayer-perceptron GANs of the articles keras_gen was specified from."""

from typing import ClassVar

from keras_gen.models import base, gan, networks


@base.family
class MLPGAN(gan.NonSaturatingGAN):
    """A GAN of fully connected networks (Goodfellow et al. 2014's setting).

    The algorithm is `gan.NonSaturatingGAN`'s: a train_step with one optimizer
    per network. Tutorials train this model through a combined Keras model with
    `discriminator.trainable = False`; in Keras 3 that flag does not freeze what
    they expect, so the discriminator is trained on the generator's loss too.

    Args:
        generator_units: widths of the generator's hidden Dense layers.
        generator_batch_norm: batch norm after each hidden ReLU of the generator.
        discriminator_units: widths of the discriminator's hidden Dense layers.
        discriminator_activation: "relu" or "leaky_relu" (slope 0.2).
        discriminator_dropout: dropout rate after each hidden layer; 0 for none.
        **kwargs: the arguments every GAN takes (`gan.GAN`): image_size,
            channels, latent_dim, seed, generator_ema_decay, truncation.

    Example:
        model = keras_gen.MLPGAN(image_size=28, channels=1)  # the Keras article's
        model.compile()  # Adam(2e-4, beta_1=0.5) for each network
        model.fit(keras_gen.data.load("mnist"), epochs=5)
        images = model.generate(16, seed=0)
    """

    tuple_arguments: ClassVar[tuple[str, ...]] = (
        "generator_units",
        "discriminator_units",
    )

    def __init__(
        self,
        *,
        generator_units: tuple[int, ...] = (128, 256, 512),
        generator_batch_norm: bool = True,
        discriminator_units: tuple[int, ...] = (512, 256),
        discriminator_activation: str = "relu",
        discriminator_dropout: float = 0.3,
        **kwargs,
    ):
        # Set before the networks are built, in NonSaturatingGAN.__init__.
        self.generator_units = tuple(generator_units)
        self.generator_batch_norm = generator_batch_norm
        self.discriminator_units = tuple(discriminator_units)
        self.discriminator_activation = discriminator_activation
        self.discriminator_dropout = discriminator_dropout
        super().__init__(**kwargs)  # the GAN's arguments

    def _build_networks(self) -> tuple:
        shape = (self.image_size, self.image_size, self.channels)
        return (
            networks.build_mlp_generator(
                self.latent_dim, shape, self.generator_units, self.generator_batch_norm
            ),
            networks.build_mlp_discriminator(
                shape,
                self.discriminator_units,
                self.discriminator_activation,
                self.discriminator_dropout,
                self.seed,
            ),
        )
