"""Class-conditional GAN with a projection discriminator (Miyato and Koyama, 2018)."""

from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_gen import losses
from keras_gen.models import base
from keras_gen.models.dcgan import (
    DCGAN,
    _base_size,
    _init,
    build_generator,
    discriminator_body,
)


def build_projection_discriminator(
    image_size: int, channels: int, filters: int, num_classes: int
) -> keras.Model:
    """(images in [-1, 1], labels (batch, 1)) -> logits psi(phi(x)) + embed(y) . phi(x).

    phi is the DCGAN discriminator's convolutions, flattened, and psi its linear
    read-out (a valid convolution over the whole map is a dense layer on the
    flattened map): with the class embedding at zero this is DCGAN's discriminator.
    """
    size, downsamplings = _base_size(image_size)
    images = keras.Input((image_size, image_size, channels), name="images")
    labels = keras.Input((1,), dtype="int32", name="labels")
    hidden = images
    for layer in discriminator_body(image_size, filters):
        hidden = layer(hidden)
    features = keras.layers.Flatten(name="features")(hidden)
    # float32 from here on under a mixed-precision policy: these are the logits.
    unconditional = keras.layers.Dense(
        1, kernel_initializer=_init(), dtype="float32", name="psi"
    )(features)
    embedded = keras.layers.Embedding(
        num_classes,
        size * size * filters * 2 ** (downsamplings - 1),
        embeddings_initializer=_init(),
        dtype="float32",
        name="class_embedding",
    )(labels)
    projection = keras.layers.Dot(axes=1, dtype="float32", name="projection")(
        [keras.layers.Flatten(dtype="float32")(embedded), features]
    )
    logits = keras.layers.Add(dtype="float32", name="logits")(
        [unconditional, projection]
    )
    return keras.Model([images, labels], logits, name="discriminator")


@keras.saving.register_keras_serializable(package="keras_gen")
class ConditionalGAN(base.NetworkOptimizers, keras.Model):
    """Class-conditional DCGAN with a projection discriminator (Miyato and Koyama, 2018).

    The generator is DCGAN's, reading a one-hot class beside the latents. The
    discriminator scores psi(phi(x)) + embed(y) . phi(x): an unconditional read-out
    of its features plus their inner product with a learned embedding of the class.
    Projection rather than AC-GAN's auxiliary classifier: AC-GAN adds a
    classification loss that rewards the generator for samples that are easy to
    classify, which pulls them towards a few clear-cut prototypes per class and
    costs diversity; projection puts the condition inside the discriminator's
    logit, so the standard non-saturating GAN loss is kept as is. Training batches
    are (images in [0, 1], labels int32 (batch, 1)); the generated half of each
    step uses the batch's real labels.

    Args:
        class_names: the classes; a label is the position of its name.
        image_size: side of the square images; 28, 32 and 64 all work.
        channels: 1 for grayscale, 3 for RGB.
        latent_dim: size of the generator's input noise.
        generator_filters: width of the generator's last hidden layer; the layers
            before it double it.
        discriminator_filters: width of the discriminator's first layer.
        seed: fixes the training noise: step t draws the same latents whatever the
            number of replicas.

    Example:
        names = list(keras_gen.data.CLASSES["fashion_mnist"]["class"])
        model = keras_gen.ConditionalGAN(names, image_size=28, channels=1)
        model.compile()  # Adam(2e-4, beta_1=0.5) for each network
        model.fit(images, labels, batch_size=64, epochs=5)
        boots = model.generate(16, seed=0, labels="ankle boot")
    """

    def __init__(
        self,
        class_names: Sequence[str],
        image_size: int = 64,
        channels: int = 3,
        latent_dim: int = 100,
        generator_filters: int = 64,
        discriminator_filters: int = 64,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(class_names, str) or not class_names:
            raise ValueError(
                f"class_names must be a list of class names, got {class_names!r}"
            )
        if len(set(class_names)) != len(class_names):
            raise ValueError(f"class_names must be distinct, got {list(class_names)}")
        self.class_names = tuple(str(name) for name in class_names)
        self.image_size = image_size
        self.channels = channels
        self.latent_dim = latent_dim
        self.generator_filters = generator_filters
        self.discriminator_filters = discriminator_filters
        self.seed = seed
        # The generator reads [latents, one-hot class].
        self.generator = build_generator(
            latent_dim + len(self.class_names), image_size, channels, generator_filters
        )
        self.discriminator = build_projection_discriminator(
            image_size, channels, discriminator_filters, len(self.class_names)
        )
        self.generator_loss_tracker = keras.metrics.Mean(name="generator_loss")
        self.discriminator_loss_tracker = keras.metrics.Mean(name="discriminator_loss")
        self.real_output_tracker = keras.metrics.Mean(name="d_real")
        self.fake_output_tracker = keras.metrics.Mean(name="d_fake")
        self.generator_optimizer = None
        self.discriminator_optimizer = None
        self.build()

    def build(self, input_shape=None):
        # fit() never calls the model itself; both networks are built on creation.
        self.built = True

    def get_config(self):
        return {
            **super().get_config(),
            "class_names": list(self.class_names),
            "image_size": self.image_size,
            "channels": self.channels,
            "latent_dim": self.latent_dim,
            "generator_filters": self.generator_filters,
            "discriminator_filters": self.discriminator_filters,
            "seed": self.seed,
        }

    @property
    def conditions(self) -> dict:
        """Head -> class names: one head, "labels"."""
        return {"labels": tuple(self.class_names)}

    network_optimizers = DCGAN.network_optimizers
    compile = DCGAN.compile  # the same optimizers and defaults as DCGAN

    @property
    def metrics(self):
        return [
            self.generator_loss_tracker,
            self.discriminator_loss_tracker,
            self.real_output_tracker,
            self.fake_output_tracker,
        ]

    def call(self, inputs, training=False):
        """(latents, labels) -> images in [0, 1], like decode."""
        latents, labels = inputs
        labels = base.checked_labels(labels, self.conditions, tf.shape(latents)[0])
        return (self._generate(latents, labels, training) + 1.0) / 2.0

    def _generate(self, latents, labels, training):
        """Checked labels -> images in the generator's tanh range."""
        codes = tf.cast(base.one_hot(labels, self.conditions), latents.dtype)
        return self.generator(tf.concat([latents, codes], -1), training=training)

    def train_step(self, data):
        real, labels = base.labelled_batch(data, "ConditionalGAN")
        real = real * 2.0 - 1.0  # the generator's tanh range
        labels = base.checked_labels(labels, self.conditions, tf.shape(real)[0])
        seed = base.step_seed(self.seed, self.discriminator_optimizer.iterations, 0)
        latents = base.replica_normal(tf.shape(real)[0], [self.latent_dim], seed)
        generator_weights = self.generator.trainable_variables
        discriminator_weights = self.discriminator.trainable_variables

        # 1. Generate once, one image per real image and of its class; this pass
        # serves both updates.
        with tf.GradientTape() as generator_tape:
            fake = self._generate(latents, labels, training=True)

        # 2. Update the discriminator on real and generated images, each scored
        # with its label.
        with tf.GradientTape() as discriminator_tape:
            real_logits = self.discriminator([real, labels], training=True)
            fake_logits = self.discriminator([fake, labels], training=True)
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

        # 3. Update the generator against the updated discriminator, through the
        # images (loss -> images -> generator weights), as DCGAN does.
        with tf.GradientTape() as image_tape:
            image_tape.watch(fake)
            generator_losses = losses.gan_generator_losses(
                self.discriminator([fake, labels], training=True)
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
        real, labels = base.labelled_batch(data, "ConditionalGAN")
        real = real * 2.0 - 1.0
        batch = tf.shape(real)[0]
        labels = base.checked_labels(labels, self.conditions, batch)
        seed = base.step_seed(self.seed, -1, 0)
        latents = base.replica_normal(batch, [self.latent_dim], seed)
        fake = self._generate(latents, labels, training=False)
        real_logits = self.discriminator([real, labels])
        fake_logits = self.discriminator([fake, labels])
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

    def generate(
        self, num_samples: int, seed: int | None = None, labels=None
    ) -> tf.Tensor:
        """`num_samples` float32 images in [0, 1]; the same seed gives the same images.

        `labels`: a class name or index for every sample, or one per sample; None
        cycles through the classes.
        """
        latents = base.standard_normal(num_samples, self.latent_dim, seed)
        indices = base.condition_indices(
            num_samples, self.conditions, {"labels": labels}
        )
        return base.in_batches(
            lambda rows: self.decode(
                tf.gather(latents, rows), tf.gather(indices, rows)
            ),
            tf.range(num_samples),
        )

    def decode(self, latents, labels) -> tf.Tensor:
        """Images in [0, 1] for latents (batch, latent_dim) and class indices (batch,)."""
        latents = base.checked_latents(latents, self.latent_dim)
        labels = base.checked_labels(labels, self.conditions, tf.shape(latents)[0])
        return tf.clip_by_value(
            (self._generate(latents, labels, training=False) + 1.0) / 2.0, 0.0, 1.0
        )

    def serving_endpoints(self) -> dict:
        """Functions and input signatures that keras_gen.export writes, by name.

        "generate" takes latents (batch, latent_dim) and one label per latent;
        "sample" takes num_samples, seed and `labels` of shape (1,), the class of
        every sample (the shape of a conditional VAE's `labels` with its one
        head), and gives what generate(num_samples, seed, labels=label) gives.
        Labels out of range fail the request. The first is also `serving_default`.
        """
        latents = tf.TensorSpec([None, self.latent_dim], tf.float32, name="latents")
        labels = tf.TensorSpec([None], tf.int32, name="labels")

        def generate(latents, labels):
            return {"images": self.decode(latents, labels)}

        return {
            "generate": (generate, [latents, labels]),
            "sample": base.conditional_sample_endpoint(self.latent_dim, self.decode, 1),
        }
