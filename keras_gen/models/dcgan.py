"""DCGAN (Radford, Metz and Chintala, 2016)."""

from keras_gen.models import base, gan, networks


@base.family
class DCGAN(gan.NonSaturatingGAN):
    """Deep convolutional GAN (Radford, Metz and Chintala, 2016), non-saturating loss.

    The algorithm is `gan.NonSaturatingGAN`'s; the networks are convolutional.
    A conditional variant changes the hooks `_build_networks`,
    `_generator_inputs` and `_discriminator_inputs` only.

    Args:
        generator_filters: width of the generator's last hidden layer; the layers
            before it double it.
        discriminator_filters: width of the discriminator's first layer.
        **kwargs: the arguments every GAN takes (`gan.GAN`): image_size,
            channels, latent_dim, seed, generator_ema_decay, truncation.

    Example:
        model = keras_gen.DCGAN(image_size=28, channels=1)
        model.compile()  # Adam(2e-4, beta_1=0.5) for each network
        model.fit(keras_gen.data.load("mnist"), epochs=5)
        images = model.generate(16, seed=0)
    """

    def __init__(
        self, *, generator_filters: int = 64, discriminator_filters: int = 64, **kwargs
    ):
        # Set before the networks are built, in NonSaturatingGAN.__init__.
        self.generator_filters = generator_filters
        self.discriminator_filters = discriminator_filters
        super().__init__(**kwargs)  # the GAN's arguments

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
