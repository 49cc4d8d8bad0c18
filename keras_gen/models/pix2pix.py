"""pix2pix (Isola, Zhu, Zhou and Efros 2017): image-to-image translation with a
conditional GAN."""

from typing import ClassVar

import tensorflow as tf

from keras_gen import losses
from keras_gen.models import base, gan, networks
from keras_gen.models.translation import Translator, tanh_range, unit_range


@base.family
class Pix2Pix(gan.AdversarialUpdates, Translator):
    """Image-to-image translation with a conditional GAN (Isola et al. 2017).

    A U-Net generator G translates an input x (a sketch, a grayscale photo) into an
    image; a PatchGAN discriminator D judges (x, image) pairs patch by patch. G
    minimises the non-saturating conditional adversarial loss plus lambda times the
    L1 distance to the target y, which keeps the low frequencies right while D
    asks for sharp, realistic texture:

        G* = arg min_G max_D  L_cGAN(G, D) + lambda * E |y - G(x)|_1.

    Each network has its own optimizer (`gan.AdversarialUpdates`); D's loss is
    halved, as in the paper, so it learns slower than G. The paper's noise is
    dropout in G's decoder, in training only: the paper keeps it at test time too
    but finds that it barely changes the outputs, and without it `translate`,
    the exported signature and TFLite give the same images for the same input.
    Trains on (inputs, targets) batches in [0, 1], such as a paired dataset's.

    Args:
        image_size: side of the square inputs and outputs, a power of 2 (64).
        input_channels: the inputs' channels (1 for sketches and grayscale).
        output_channels: the images' channels (3 for RGB).
        generator_filters: the U-Net's first width; deeper layers double it, up to
            8 times.
        discriminator_filters: the PatchGAN's first width.
        l1_weight: lambda, the weight of the L1 term, in the tanh range [-1, 1] as
            the reference code computes it (the paper's 100).
        dropout: the rate of the U-Net's dropout, in its three innermost decoder
            layers (the paper's 0.5); 0 for none.
        seed: fixes the dropout masks: step t draws the same ones whatever the
            number of replicas.

    Example:
        model = keras_gen.Pix2Pix(image_size=64, input_channels=1)
        model.compile()  # Adam(2e-4, beta_1=0.5) for each network
        model.fit(keras_gen.data.load("faces_edges", batch_size=32), epochs=5)
        faces = model.translate(keras_gen.data.paired("edges", photos))
    """

    discriminator_loss_weight: ClassVar[float] = 0.5

    def __init__(
        self,
        *,
        image_size: int = 64,
        input_channels: int = 1,
        output_channels: int = 3,
        generator_filters: int = 64,
        discriminator_filters: int = 64,
        l1_weight: float = 100.0,
        dropout: float = 0.5,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if l1_weight < 0:
            raise ValueError(
                f"l1_weight must be >= 0, got {l1_weight}; the paper uses 100"
            )
        self.image_size = image_size
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.generator_filters = generator_filters
        self.discriminator_filters = discriminator_filters
        self.l1_weight = l1_weight
        self.dropout = dropout
        self.seed = seed
        self.input_image_shape = (image_size, image_size, input_channels)
        self.image_shape = (image_size, image_size, output_channels)
        self.generator = networks.build_unet(
            image_size,
            input_channels,
            output_channels,
            generator_filters,
            dropout,
            seed,
        )
        self.discriminator = networks.build_patch_discriminator(
            image_size, input_channels, output_channels, discriminator_filters
        )
        for optimizer in self.network_optimizers:
            setattr(self, optimizer, None)  # set by compile
        # l1_loss: mean |G(x) - y| in the tanh range; d_real and d_fake: D's mean
        # probability, over patches, that a pair is real.
        self.trackers = base.mean_trackers(
            "generator_loss", "l1_loss", "discriminator_loss", "d_real", "d_fake"
        )
        self.build()

    def _translate(self, inputs, training):
        return unit_range(self.generator(tanh_range(inputs), training=training))

    def _discriminator_inputs(self, images, condition):
        return [condition, images]

    def train_step(self, data):
        inputs, real = (tanh_range(part) for part in self._pair(data))

        # 1. Translate once, dropout on; this pass serves both updates.
        with tf.GradientTape() as generator_tape:
            fake = self.generator(inputs, training=True)

        # 2. Update D on (input, target) and (input, translation) pairs.
        discriminator_losses, real_logits, fake_logits = self._update_discriminator(
            real, fake, inputs
        )

        # 3. Update G: fool the updated D, and stay near the target in L1.
        generator_losses = self._update_generator(
            generator_tape,
            fake,
            lambda images: self._generator_losses(images, inputs, real),
        )
        return self._track_losses(
            discriminator_losses, generator_losses, real_logits, fake_logits
        )

    def _generator_losses(self, fake, inputs, real) -> tuple:
        """(per-example -log D(x, G(x)) + lambda |y - G(x)|_1, the two terms by name)."""
        adversarial = losses.gan_generator_losses(
            self._discriminate(fake, inputs, training=True)
        )
        l1 = losses.patch_mean(tf.abs(real - fake))
        return adversarial + self.l1_weight * l1, {
            "generator_loss": adversarial,
            "l1_loss": l1,
        }

    def test_step(self, data):
        inputs, real = (tanh_range(part) for part in self._pair(data))
        fake = self.generator(inputs, training=False)
        real_logits = self._discriminate(real, inputs)
        fake_logits = self._discriminate(fake, inputs)
        return self._track_losses(
            losses.gan_discriminator_losses(real_logits, fake_logits),
            {
                "generator_loss": losses.gan_generator_losses(fake_logits),
                "l1_loss": losses.patch_mean(tf.abs(real - fake)),
            },
            real_logits,
            fake_logits,
        )
