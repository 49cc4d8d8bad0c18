"""Class-conditional GAN with a projection discriminator (Miyato and Koyama, 2018)."""

from typing import ClassVar

from keras_gen.models import base, conditioning, networks
from keras_gen.models.dcgan import DCGAN


@base.family
class ConditionalGAN(DCGAN):
    """Class-conditional DCGAN with a projection discriminator (Miyato and Koyama, 2018).

    DCGAN's algorithm, with the class fed to both networks. The generator is
    DCGAN's, reading a one-hot class beside the latents. The discriminator scores
    psi(phi(x)) + embed(y) . phi(x): an unconditional read-out of its features plus
    their inner product with a learned embedding of the class. Projection rather
    than AC-GAN's auxiliary classifier: AC-GAN adds a classification loss that
    rewards the generator for samples that are easy to classify, which pulls them
    towards a few clear-cut prototypes per class and costs diversity; projection
    puts the condition inside the discriminator's logit, so the standard
    non-saturating GAN loss is kept as is. Training batches are (images in [0, 1],
    labels int32 (batch, 1)); the generated half of each step uses the batch's
    real labels.

    Args:
        conditions: {head: class names} with one head (the projection embeds one
            label); a label is the position of its class name.
        **kwargs: DCGAN's arguments: image_size, channels, latent_dim,
            generator_filters, discriminator_filters, seed, generator_ema_decay,
            truncation.

    Example:
        classes = keras_gen.data.class_names("fashion_mnist")  # {"class": (...)}
        model = keras_gen.ConditionalGAN(classes, image_size=28, channels=1)
        model.compile()  # Adam(2e-4, beta_1=0.5) for each network
        model.fit(images, labels, batch_size=64, epochs=5)
        boots = model.generate(16, seed=0, **{"class": "ankle boot"})
    """

    capabilities: ClassVar[frozenset[str]] = DCGAN.capabilities | {base.CONDITIONS}

    def __init__(self, conditions: dict, **kwargs):
        conditions = conditioning.checked_conditions(conditions)
        if len(conditions) != 1:
            raise ValueError(
                f"ConditionalGAN takes one head (its projection discriminator embeds "
                f"one label), got {list(conditions)}; ConditionalVAE takes several"
            )
        # Set before DCGAN.__init__, which builds the networks through the hooks.
        self.conditions = conditions
        super().__init__(**kwargs)  # DCGAN's arguments

    def _build_networks(self) -> tuple:
        # The generator reads [latents, one-hot class].
        code_size = conditioning.code_size(self.conditions)
        return (
            networks.build_generator(
                self.latent_dim + code_size,
                self.image_size,
                self.channels,
                self.generator_filters,
            ),
            networks.build_projection_discriminator(
                self.image_size, self.channels, self.discriminator_filters, code_size
            ),
        )

    def _generator_inputs(self, latents, labels):
        return conditioning.beside_codes(latents, labels, self.conditions)

    def _discriminator_inputs(self, images, labels):
        return [images, labels]
