"""Single-image super-resolution: a residual network with sub-pixel upsampling trained
for PSNR, optionally SRGAN's adversarial and feature losses (Ledig et al. 2017)."""

import keras
import tensorflow as tf

from keras_gen import losses
from keras_gen.models import base, gan, networks
from keras_gen.models.translation import Translator, tanh_range


@base.family
class SuperResolution(gan.AdversarialUpdates, Translator):
    """Super-resolution by a residual network with sub-pixel upsampling (SRResNet,
    Ledig et al. 2017), trained for PSNR; SRGAN's losses optional.

    The generator (`networks.build_super_resolution_generator`) adds learned
    detail to the bilinear enlargement of the input. By default it minimises the
    L1 distance to the target (what maximises PSNR; Lim et al. 2017 found L1
    trains better than L2). SRGAN's perceptual losses are off by default:
    `adversarial_weight` > 0 adds a discriminator (DCGAN's, on the large images)
    and the non-saturating generator loss, `feature_weight` > 0 the mean squared
    distance between feature maps of output and target. SRGAN takes those of
    VGG19; VGG weights cannot be downloaded here, so they are the last feature
    maps (before global pooling) of a keras_gen Classifier preset,
    `classifier_faces` by default, frozen. Trains on (inputs, targets) batches
    in [0, 1], such as the paired dataset `faces_downsample4`.

    Args:
        input_size: side of the square low-resolution inputs (16).
        scale: the factor of each side, a power of 2 (4: 16x16 -> 64x64).
        channels: the images' channels.
        filters: width of the residual blocks.
        residual_blocks: how many (SRGAN's 16; two 3x3 convolutions each).
        adversarial_weight: weight of the adversarial loss (SRGAN's 1e-3); 0: none,
            and no discriminator.
        feature_weight: weight of the feature loss; 0: none.
        feature_extractor: the Classifier preset (name or folder) whose feature maps
            the feature loss compares; loaded only when feature_weight > 0.
        discriminator_filters: the discriminator's first width.

    Example:
        model = keras_gen.SuperResolution(input_size=16, scale=4)
        model.compile()  # Adam(1e-4) for each network
        model.fit(keras_gen.data.load("faces_downsample4", batch_size=32), epochs=5)
        faces = model.translate(keras_gen.data.paired("downsample4", photos))
    """

    def __init__(
        self,
        *,
        input_size: int = 16,
        scale: int = 4,
        channels: int = 3,
        filters: int = 64,
        residual_blocks: int = 8,
        adversarial_weight: float = 0.0,
        feature_weight: float = 0.0,
        feature_extractor: str = "classifier_faces",
        discriminator_filters: int = 64,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if adversarial_weight < 0 or feature_weight < 0:
            raise ValueError(
                "adversarial_weight and feature_weight must be >= 0 (0 turns a loss "
                f"off), got {adversarial_weight} and {feature_weight}"
            )
        self.input_size = input_size
        self.scale = scale
        self.channels = channels
        self.filters = filters
        self.residual_blocks = residual_blocks
        self.adversarial_weight = adversarial_weight
        self.feature_weight = feature_weight
        self.feature_extractor = feature_extractor
        self.discriminator_filters = discriminator_filters
        self.input_image_shape = (input_size, input_size, channels)
        self.image_shape = (input_size * scale, input_size * scale, channels)
        self.generator = networks.build_super_resolution_generator(
            input_size, channels, filters, residual_blocks, scale
        )
        self._build_perceptual_networks()
        self.build()

    def _build_perceptual_networks(self):
        """The discriminator and feature maps SRGAN's losses need; the optimizers
        and trackers of the losses in use."""
        self.network_optimizers = {"generator_optimizer": "generator"}
        tracked = ["l1_loss", "psnr"]
        if self.feature_weight:
            self.feature_maps = _feature_maps(self.feature_extractor, self.image_shape)
            tracked.append("feature_loss")
        if self.adversarial_weight:
            self.discriminator = networks.build_discriminator(
                self.image_shape[0], self.channels, self.discriminator_filters
            )
            self.network_optimizers["discriminator_optimizer"] = "discriminator"
            tracked += ["generator_loss", "discriminator_loss", "d_real", "d_fake"]
        for optimizer in self.network_optimizers:
            setattr(self, optimizer, None)  # set by compile
        # psnr: dB of the clipped output against the target, averaged over images.
        self.trackers = base.mean_trackers(*tracked)

    def compile(
        self,
        generator_optimizer: keras.optimizers.Optimizer | str | None = None,
        discriminator_optimizer: keras.optimizers.Optimizer | str | None = None,
        **kwargs,
    ):
        """Set one optimizer per network (default: Adam(1e-4) each, SRGAN's).

        Without an adversarial loss there is no discriminator to optimise.
        """
        if discriminator_optimizer is not None and not self.adversarial_weight:
            raise ValueError(
                "this SuperResolution has no discriminator (adversarial_weight=0); "
                "drop discriminator_optimizer, or set adversarial_weight > 0"
            )
        self._compile_networks(
            {
                "generator_optimizer": generator_optimizer,
                "discriminator_optimizer": discriminator_optimizer,
            },
            lambda name: keras.optimizers.Adam(1e-4),
            **kwargs,
        )

    def _translate(self, inputs, training):
        return self.generator(inputs, training=training)

    def train_step(self, data):
        inputs, targets = self._pair(data)

        # 1. Enlarge once; this pass serves both updates.
        with tf.GradientTape() as generator_tape:
            images = self.generator(inputs, training=True)

        # 2. With the adversarial loss: update the discriminator on real and
        # enlarged images.
        tracked = {}
        if self.adversarial_weight:
            tracked = self._adversarial_logs(
                *self._update_discriminator(
                    tanh_range(targets), tanh_range(images), None
                )
            )

        # 3. Update the generator: L1 to the target, plus the perceptual losses.
        tracked.update(
            self._update_generator(
                generator_tape,
                images,
                lambda found: self._generator_losses(found, targets),
            )
        )
        return self._track(**tracked)

    def _generator_losses(self, images, targets, training=True) -> tuple:
        """(per-example loss, {name: per-example values}) of images against targets."""
        l1 = losses.patch_mean(tf.abs(targets - images))
        clipped = tf.clip_by_value(images, 0.0, 1.0)
        tracked = {"l1_loss": l1, "psnr": tf.image.psnr(clipped, targets, 1.0)}
        total = l1
        if self.feature_weight:
            distance = self.feature_maps(images) - self.feature_maps(targets)
            # float32 even when the feature maps compute in float16 (mixed precision).
            squares = tf.square(tf.cast(distance, tf.float32))
            tracked["feature_loss"] = losses.patch_mean(squares)
            total += self.feature_weight * tracked["feature_loss"]
        if self.adversarial_weight:
            logits = self._discriminate(tanh_range(images), None, training=training)
            tracked["generator_loss"] = losses.gan_generator_losses(logits)
            total += self.adversarial_weight * tracked["generator_loss"]
        return total, tracked

    def _adversarial_logs(self, discriminator_losses, real_logits, fake_logits):
        return {
            "discriminator_loss": discriminator_losses,
            "d_real": tf.sigmoid(real_logits),
            "d_fake": tf.sigmoid(fake_logits),
        }

    def test_step(self, data):
        inputs, targets = self._pair(data)
        images = self.generator(inputs, training=False)
        _, tracked = self._generator_losses(images, targets, training=False)
        if self.adversarial_weight:
            real_logits = self._discriminate(tanh_range(targets), None)
            fake_logits = self._discriminate(tanh_range(images), None)
            tracked.update(
                self._adversarial_logs(
                    losses.gan_discriminator_losses(real_logits, fake_logits),
                    real_logits,
                    fake_logits,
                )
            )
        return self._track(**tracked)


def _feature_maps(preset: str, image_shape: tuple) -> keras.Model:
    """A Classifier preset's last feature maps (before its global pooling), frozen."""
    from keras_gen import zoo  # zoo imports every model family: import it when needed

    classifier = zoo.load(preset)
    classifier.require(base.CLASSIFY, f"be the feature_extractor ({preset!r})")
    if tuple(classifier.image_shape) != tuple(image_shape):
        raise ValueError(
            f"feature_extractor {preset!r} reads images of shape "
            f"{tuple(classifier.image_shape)}, this model makes {tuple(image_shape)}"
        )
    network = classifier.feature_network
    pooling = next(
        layer
        for layer in network.layers
        if isinstance(layer, keras.layers.GlobalAveragePooling2D)
    )
    maps = keras.Model(network.inputs[0], pooling.input, name="feature_maps")
    maps.trainable = False
    return maps
