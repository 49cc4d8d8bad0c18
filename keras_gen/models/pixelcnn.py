"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with
PixelCNN Decoders") for binary images: an exact, autoregressive likelihood.

The gated blocks are in `networks`; this module holds the likelihood, its
training, and the pixel-by-pixel sampling that reuses the vertical stack's work.
"""

from typing import ClassVar

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from keras import ops

from keras_gen import losses, progress
from keras_gen.models import base, inputs, networks

tfd = tfp.distributions

# Samples drawn together by `generate`; more at once only costs memory.
SAMPLING_BATCH_SIZE = 256


@base.family
class PixelCNN(base.Family):
    """Gated PixelCNN of binary images: p(x) = prod_i p(x_i | x_<i), Bernoulli per pixel.

    The log-likelihood is exact, so `loss` is the negative log-likelihood in nats
    per image (and `bits_per_dim` the same per pixel, in bits). Trains on images
    with pixels in {0, 1}, such as dynamically binarized MNIST. Sampling is
    sequential: one pixel after another, so `generate` is slow compared with a
    VAE or GAN.

    Args:
        image_shape: (height, width, 1); one channel only (binary images).
        filters: channels of each stack.
        num_layers: gated blocks: a 7x7 mask-A block, then 3x3 mask-B blocks.
            Each pixel sees about num_layers + 2 pixels up, left and right.

    Example:
        model = keras_gen.models.PixelCNN(filters=32, num_layers=8)
        model.compile(optimizer="adam")
        model.fit(keras_gen.data.load("mnist", binarize=True), epochs=1)
        nats = model.negative_log_likelihood(images)  # exact, per image
        samples = model.generate(16, seed=0)
    """

    capabilities: ClassVar[frozenset[str]] = frozenset(
        {base.SAMPLES, base.LIKELIHOOD, base.PREVIEW, base.INPAINTING}
    )
    tuple_arguments: ClassVar[tuple[str, ...]] = ("image_shape",)
    likelihood_bound: ClassVar[str] = "exact"

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (28, 28, 1),
        filters: int = 32,
        num_layers: int = 8,
        **kwargs,
    ):
        super().__init__(**kwargs)
        image_shape = tuple(image_shape)
        if len(image_shape) != 3 or image_shape[-1] != 1:
            raise ValueError(
                f"PixelCNN models binary images of one channel: image_shape must be "
                f"(height, width, 1), got {image_shape}. Colour would need the "
                "paper's per-channel (R -> G -> B) masks, which this model lacks."
            )
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        self.image_shape = image_shape
        self.filters = filters
        self.num_layers = num_layers
        self.blocks = networks.build_gated_blocks(filters, num_layers)
        self.output_hidden, self.output_logits = networks.build_pixel_logits(filters)
        self.trackers = base.mean_trackers("loss", "bits_per_dim")
        self.build()

    def build(self, input_shape=None):
        # Built on creation (fit never calls the model itself): the first block
        # reads the image, every later one `filters` channels.
        shape = (None, *self.image_shape)
        for block in self.blocks:
            block.build(shape)
            shape = (*shape[:-1], self.filters)
        self.output_hidden.build(shape)
        self.output_logits.build(shape)
        self.built = True

    def call(self, images, training=False):
        """Per-pixel logits of p(x_i = 1 | x_<i), (batch, height, width, 1)."""
        return self._horizontal_logits(images, self._vertical_links(images))

    def _vertical_links(self, images):
        """Each block's link from the vertical stack into the horizontal one."""
        links, features = [], images
        for block in self.blocks:
            features, link = block.vertical(features)
            links.append(link)
        return links

    def _horizontal_logits(self, images, links):
        """Logits from the horizontal stack, given the vertical links of the same rows."""
        features = images
        for block, link in zip(self.blocks, links):
            features = block.horizontal(features, link)
        return self.output_logits(self.output_hidden(ops.relu(features)))

    def _pixel_conditionals(self, images, training=False) -> tfd.Distribution:
        """Each pixel's Bernoulli given the pixels before it in `images`.

        Its log_prob(images) is the exact log p(images); at other images it means nothing.
        """
        logits = self(images, training=training)
        return tfd.Independent(
            tfd.Bernoulli(logits=logits, dtype=tf.float32), reinterpreted_batch_ndims=3
        )

    def log_prob(self, images) -> tf.Tensor:
        """Exact log p(x) per image in nats, for images with pixels in {0, 1}."""
        images = inputs.checked_images(images, self.image_shape)
        return self._pixel_conditionals(images).log_prob(images)

    def negative_log_likelihood(self, images) -> tf.Tensor:
        """Exact -log p(x) per image in nats: what `evaluate` averages as its loss."""
        return -self.log_prob(images)

    def score(self, images) -> tf.Tensor:
        """Per-example negative log-likelihood in nats (as negative_log_likelihood)."""
        return self.negative_log_likelihood(images)

    def train_step(self, data):
        images = inputs.images(data)
        # Maximum likelihood: the exact negative log-likelihood, one update.
        with tf.GradientTape() as tape:
            negative_log_likelihood = self._negative_log_likelihood(
                images, training=True
            )
            loss = losses.average_over_global_batch(negative_log_likelihood)
            loss = self.optimizer.scale_loss(loss)
        weights = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return self._track_nats(negative_log_likelihood)

    def test_step(self, data):
        return self._track_nats(self._negative_log_likelihood(inputs.images(data)))

    def _negative_log_likelihood(self, images, training=False):
        """-log p(x) of a training batch, without the public method's checks."""
        images = tf.cast(images, tf.float32)
        return -self._pixel_conditionals(images, training=training).log_prob(images)

    def _track_nats(self, negative_log_likelihood):
        pixels = float(np.prod(self.image_shape))
        return self._track(
            loss=negative_log_likelihood,
            bits_per_dim=negative_log_likelihood / (pixels * np.log(2.0)),
        )

    def _sample(self, num_samples, seed, labels) -> tf.Tensor:
        """Binary float32 images, pixel by pixel; the same seed, the same images."""
        if seed is None:
            seed = tf.random.uniform([], maxval=2**62, dtype=tf.int64)
        noise = self.sampling_noise(num_samples, seed)
        # The exported `sample` traces this too: its graph must not call Python.
        if not progress.enabled() or not tf.executing_eagerly():
            return self.sample_from_noise(noise)
        rows = -(-num_samples // SAMPLING_BATCH_SIZE) * self.image_shape[0]
        with progress.bar("sampling", rows, "rows"):
            return self._sample_showing_progress(noise)

    @tf.function(
        input_signature=[
            tf.TensorSpec([], tf.int32, name="num_samples"),
            tf.TensorSpec([], tf.int64, name="seed"),
        ]
    )
    def sampling_noise(self, num_samples, seed) -> tf.Tensor:
        """Uniform noise (num_samples, height, width, 1) that fixes every pixel's draw.

        Pixel p's noise is drawn from the stateless seed (seed, p): images are a pure
        function of (seed, num_samples), however they are batched.
        """
        height, width, _ = self.image_shape
        noise = tf.map_fn(
            lambda pixel: tf.random.stateless_uniform(
                [num_samples], seed=tf.stack([seed, pixel])
            ),
            tf.range(height * width, dtype=tf.int64),
            fn_output_signature=tf.float32,
        )
        return tf.reshape(tf.transpose(noise), [num_samples, height, width, 1])

    @tf.function(
        input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32, name="noise")]
    )
    def sample_from_noise(self, noise) -> tf.Tensor:
        """Ancestral sampling: pixel (i, j) is 1 where its noise < p(x_ij = 1 | x_<ij).

        A deterministic function of the noise, like a GAN's of its latents. Drawn
        SAMPLING_BATCH_SIZE images at a time, in the graph, so the exported
        signature and `generate` share one bounded-memory path.
        """
        return self._draw_in_batches(noise)

    @tf.function(reduce_retracing=True)
    def _sample_showing_progress(self, noise) -> tf.Tensor:
        """`sample_from_noise` that advances the progress bar after every row (a
        Python callback in the graph, so it is never exported)."""
        return self._draw_in_batches(noise, on_row=progress.advance_in_graph)

    def _draw_in_batches(self, noise, on_row=None) -> tf.Tensor:
        noise = tf.ensure_shape(noise, [None, *self.image_shape])
        count = tf.shape(noise)[0]
        size = SAMPLING_BATCH_SIZE
        batches = (count + size - 1) // size

        def draw_batch(k, images):
            batch = noise[k * size : (k + 1) * size]
            return k + 1, images.write(k, self._draw(batch, on_row=on_row))

        _, images = tf.while_loop(
            lambda k, images: k < batches,
            draw_batch,
            (tf.constant(0), tf.TensorArray(tf.float32, batches, infer_shape=False)),
        )
        return tf.ensure_shape(images.concat(), [None, *self.image_shape])

    def _draw(self, noise, known=None, missing=None, on_row=None):
        """Row by row: the vertical stack runs once per row, on the rows already drawn
        (its links for row i read rows < i only); then the horizontal stack runs once
        per pixel on that one row. Each logit equals the whole network's for that
        pixel, at a fraction of the cost; nothing is kept between calls. With
        `known` images, only their `missing` pixels are drawn; the rest are kept.
        `on_row()`, if given, is called in the graph once each row is drawn.
        """
        height, width, _ = self.image_shape
        batch = tf.shape(noise)[0]

        def draw_row(i, images):
            prefix = images[:, : i + 1]  # row i itself is still zeros, and unread
            links = [link[:, i : i + 1] for link in self._vertical_links(prefix)]

            def draw_pixel(j, row):
                logits = self._horizontal_logits(row, links)[:, 0, :, 0]
                probability = tf.sigmoid(tf.gather(logits, j, axis=1))
                pixel = tf.cast(noise[:, i, j, 0] < probability, tf.float32)
                if known is not None:
                    pixel = tf.where(missing[:, i, j, 0] > 0, pixel, known[:, i, j, 0])
                column = tf.one_hot(j, width)[None, None, :, None]
                return j + 1, row + pixel[:, None, None, None] * column

            _, row = tf.while_loop(
                lambda j, row: j < width,
                draw_pixel,
                (tf.constant(0), tf.zeros([batch, 1, width, 1])),
            )
            if on_row is not None:
                with tf.control_dependencies([row]):
                    on_row()
            return i + 1, images + row * tf.one_hot(i, height)[None, :, None, None]

        _, images = tf.while_loop(
            lambda i, images: i < height,
            draw_row,
            (tf.constant(0), tf.zeros([batch, height, width, 1])),
        )
        return images

    def inpaint(self, images, missing, seed: int = 0) -> tf.Tensor:
        """Binary `images` with their `missing` pixels (1 = missing) drawn from the model.

        Pixels are drawn in raster order, each from p(x_ij | every pixel before it,
        observed or drawn). Observed pixels after a missing one are not seen: the
        fill is exact where the missing region ends the raster (a bottom half), an
        approximation elsewhere.
        """
        images = inputs.checked_images(images, self.image_shape)
        missing = tf.cast(
            inputs.shaped_images(missing, self.image_shape) > 0, tf.float32
        )
        noise = self.sampling_noise(len(images), seed)
        size = SAMPLING_BATCH_SIZE
        return tf.concat(
            [
                self._fill(
                    noise[k : k + size], images[k : k + size], missing[k : k + size]
                )
                for k in range(0, len(images), size)
            ],
            axis=0,
        )

    # Its loops are tf.while_loops already; autograph would convert Keras's own
    # layer-building code, which the first call after loading runs.
    @tf.function(reduce_retracing=True, autograph=False)
    def _fill(self, noise, known, missing):
        return self._draw(noise, known, missing)

    def serving_endpoints(self) -> dict:
        """Functions and input signatures that keras_gen.export writes, by name.

        The first is also `serving_default`.
        """

        def score(images, labels):
            return {"negative_log_likelihood": self.negative_log_likelihood(images)}

        images = tf.TensorSpec([None, *self.image_shape], tf.float32, name="images")
        return {
            "score": self._endpoint(score, images),
            "sample": self._sample_endpoint(),
        }
