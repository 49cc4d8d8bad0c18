"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with
PixelCNN Decoders") for binary images: an exact, autoregressive likelihood.

Two stacks of convolutions keep every pixel's prediction causal in raster order.
The vertical stack sees the rows above (its output is shifted down one row before
the horizontal stack reads it); the horizontal stack sees the pixels to the left
in the current row. Together they cover everything before a pixel, with none of
the original PixelCNN's blind spot.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from keras import ops

from keras_gen import losses
from keras_gen.models import base

tfd = tfp.distributions

# The paper's kernel sizes: a wide first layer, then 3x3 (as halves, see below).
FIRST_KERNEL_SIZE = 7
KERNEL_SIZE = 3
# Samples drawn together by `generate`; more at once only costs memory.
SAMPLING_BATCH_SIZE = 256


def gate(features):
    """tanh(a) * sigmoid(b) over the two halves of the channels (the paper's eq. 2)."""
    values, gates = ops.split(features, 2, axis=-1)
    return ops.tanh(values) * ops.sigmoid(gates)


def shift_down(features):
    """Move every row one down (a zero row on top), so row i holds what row i-1 held."""
    return ops.pad(features, [[0, 0], [1, 0], [0, 0], [0, 0]])[:, :-1]


@keras.saving.register_keras_serializable(package="keras_gen")
class VerticalConv2D(keras.layers.Layer):
    """A k x k convolution cut to the current row and the rows above it.

    The kernel is (k // 2 + 1, k): output row i reads input rows i - k // 2 .. i,
    all columns within k // 2. Row i includes pixels right of the current one, so
    its output must be shifted down a row (`shift_down`) before a pixel may see it.

    Args:
        filters: output channels.
        kernel_size: k, odd.
    """

    def __init__(self, filters: int, kernel_size: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size

    def build(self, input_shape):
        size = self.kernel_size
        self.kernel = self.add_weight(
            shape=(size // 2 + 1, size, input_shape[-1], self.filters),
            initializer="glorot_uniform",
            name="kernel",
        )
        self.bias = self.add_weight(
            shape=(self.filters,), initializer="zeros", name="bias"
        )

    def call(self, inputs):
        half = self.kernel_size // 2
        # Zeros above and at the sides only: no output row reads a row below it.
        padded = ops.pad(inputs, [[0, 0], [half, 0], [half, half], [0, 0]])
        return ops.conv(padded, self.kernel, padding="valid") + self.bias

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
        }


MASK_TYPES = ("A", "B")


@keras.saving.register_keras_serializable(package="keras_gen")
class HorizontalConv2D(keras.layers.Layer):
    """A 1 x k convolution cut to the current pixel and those left of it in its row.

    Mask type "A" also hides the current pixel: the first layer, which reads the
    image, must not see the pixel it predicts. Type "B", for every later layer,
    keeps it: there it holds features of the pixels before it only.

    Args:
        filters: output channels.
        kernel_size: k, odd; the kernel is (1, k // 2 + 1).
        mask_type: "A" or "B".
    """

    def __init__(self, filters: int, kernel_size: int, mask_type: str, **kwargs):
        super().__init__(**kwargs)
        if mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.mask_type = mask_type

    def build(self, input_shape):
        width = self.kernel_size // 2 + 1
        self.kernel = self.add_weight(
            shape=(1, width, input_shape[-1], self.filters),
            initializer="glorot_uniform",
            name="kernel",
        )
        self.bias = self.add_weight(
            shape=(self.filters,), initializer="zeros", name="bias"
        )
        mask = np.ones((1, width, 1, 1), "float32")
        if self.mask_type == "A":
            mask[:, -1] = 0.0  # the last tap is the current pixel
        self.kernel_mask = mask

    def call(self, inputs):
        padded = ops.pad(inputs, [[0, 0], [0, 0], [self.kernel_size // 2, 0], [0, 0]])
        kernel = self.kernel * ops.cast(self.kernel_mask, self.kernel.dtype)
        return ops.conv(padded, kernel, padding="valid") + self.bias

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "mask_type": self.mask_type,
        }


@keras.saving.register_keras_serializable(package="keras_gen")
class GatedBlock(keras.layers.Layer):
    """One gated layer of both stacks (the paper's figure 2), unconditional.

    The vertical stack: v' = gate(V * v). The horizontal stack reads the vertical
    features of the row above through a 1x1 convolution:
    h' = h + 1x1(gate(H * h + 1x1(shift_down(V * v)))). A mask-A block has no
    residual: its h is the image itself, and adding it back would reveal the
    current pixel.

    Args:
        filters: channels of each stack (the gate halves 2 * filters).
        kernel_size: k of the k x k vertical and 1 x k horizontal convolutions.
        mask_type: "A" for the first block, "B" after it.
    """

    def __init__(self, filters: int, kernel_size: int, mask_type: str, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.mask_type = mask_type
        self.vertical_conv = VerticalConv2D(
            2 * filters, kernel_size, name="vertical_conv"
        )
        self.horizontal_conv = HorizontalConv2D(
            2 * filters, kernel_size, mask_type, name="horizontal_conv"
        )
        self.vertical_to_horizontal = keras.layers.Conv2D(
            2 * filters, 1, name="vertical_to_horizontal"
        )
        self.horizontal_output = keras.layers.Conv2D(
            filters, 1, name="horizontal_output"
        )

    def build(self, input_shape):
        self.vertical_conv.build(input_shape)
        self.horizontal_conv.build(input_shape)
        self.vertical_to_horizontal.build((*input_shape[:-1], 2 * self.filters))
        self.horizontal_output.build((*input_shape[:-1], self.filters))

    def vertical(self, vertical_features):
        """The vertical stack's next features, and its link into the horizontal stack.

        Row i of the link depends on rows < i only, so any pixel of row i may read it.
        """
        features = self.vertical_conv(vertical_features)
        link = self.vertical_to_horizontal(shift_down(features))
        return gate(features), link

    def horizontal(self, horizontal_features, link):
        """The horizontal stack's next features; rows are independent of each other."""
        gated = gate(self.horizontal_conv(horizontal_features) + link)
        output = self.horizontal_output(gated)
        return output if self.mask_type == "A" else horizontal_features + output

    def call(self, inputs):
        vertical_features, horizontal_features = inputs
        vertical_features, link = self.vertical(vertical_features)
        return vertical_features, self.horizontal(horizontal_features, link)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "mask_type": self.mask_type,
        }


@keras.saving.register_keras_serializable(package="keras_gen")
class PixelCNN(base.TupleConfig, keras.Model):
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
        seed: kept for the recipe; training draws no noise (the loss is exact).

    Example:
        model = keras_gen.models.PixelCNN(filters=32, num_layers=8)
        model.compile(optimizer="adam")
        model.fit(keras_gen.data.load("mnist", binarize=True), epochs=1)
        nats = model.score(images)  # exact -log p(x) per image
        samples = model.generate(16, seed=0)
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (28, 28, 1),
        filters: int = 32,
        num_layers: int = 8,
        seed: int = 0,
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
        self.seed = seed
        self.blocks = [
            GatedBlock(
                filters,
                FIRST_KERNEL_SIZE if i == 0 else KERNEL_SIZE,
                "A" if i == 0 else "B",
                name=f"gated_block_{i}",
            )
            for i in range(num_layers)
        ]
        self.output_hidden = keras.layers.Conv2D(
            filters, 1, activation="relu", name="output_hidden"
        )
        # float32 logits under a mixed-precision policy: they parameterise Bernoullis.
        self.output_logits = keras.layers.Conv2D(
            1, 1, dtype="float32", name="output_logits"
        )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.bits_per_dim_tracker = keras.metrics.Mean(name="bits_per_dim")
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

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": self.image_shape,
            "filters": self.filters,
            "num_layers": self.num_layers,
            "seed": self.seed,
        }

    @property
    def metrics(self):
        return [self.loss_tracker, self.bits_per_dim_tracker]

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
        images = base.checked_pixels(self._check_images(images))
        return self._pixel_conditionals(images).log_prob(images)

    def score(self, images) -> tf.Tensor:
        """Per-example negative log-likelihood in nats: what `evaluate` averages."""
        return -self.log_prob(images)

    def train_step(self, data):
        images = base.images(data)
        # Maximum likelihood: the exact negative log-likelihood, one update.
        with tf.GradientTape() as tape:
            negative_log_likelihood = self._negative_log_likelihood(
                images, training=True
            )
            loss = losses.average_over_global_batch(negative_log_likelihood)
            loss = self.optimizer.scale_loss(loss)
        weights = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return self._track(negative_log_likelihood)

    def test_step(self, data):
        return self._track(self._negative_log_likelihood(base.images(data)))

    def _negative_log_likelihood(self, images, training=False):
        images = tf.cast(images, tf.float32)
        return -self._pixel_conditionals(images, training=training).log_prob(images)

    def _track(self, negative_log_likelihood):
        self.loss_tracker.update_state(negative_log_likelihood)
        pixels = float(np.prod(self.image_shape))
        self.bits_per_dim_tracker.update_state(
            negative_log_likelihood / (pixels * np.log(2.0))
        )
        return base.logs(self.metrics)

    def generate(self, num_samples: int, seed: int | None = None) -> tf.Tensor:
        """`num_samples` binary float32 images, pixel by pixel; the same seed, the same images."""
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        if seed is None:
            seed = tf.random.uniform([], maxval=2**62, dtype=tf.int64)
        return self.sample_from_noise(self.sampling_noise(num_samples, seed))

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
        noise = tf.ensure_shape(noise, [None, *self.image_shape])
        count = tf.shape(noise)[0]
        size = SAMPLING_BATCH_SIZE
        batches = (count + size - 1) // size

        def draw_batch(k, images):
            return k + 1, images.write(k, self._draw(noise[k * size : (k + 1) * size]))

        _, images = tf.while_loop(
            lambda k, images: k < batches,
            draw_batch,
            (tf.constant(0), tf.TensorArray(tf.float32, batches, infer_shape=False)),
        )
        return tf.ensure_shape(images.concat(), [None, *self.image_shape])

    def _draw(self, noise):
        """Row by row: the vertical stack runs once per row, on the rows already drawn
        (its links for row i read rows < i only); then the horizontal stack runs once
        per pixel on that one row. Each logit equals the whole network's for that
        pixel, at a fraction of the cost; nothing is kept between calls.
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
                column = tf.one_hot(j, width)[None, None, :, None]
                return j + 1, row + pixel[:, None, None, None] * column

            _, row = tf.while_loop(
                lambda j, row: j < width,
                draw_pixel,
                (tf.constant(0), tf.zeros([batch, 1, width, 1])),
            )
            return i + 1, images + row * tf.one_hot(i, height)[None, :, None, None]

        _, images = tf.while_loop(
            lambda i, images: i < height,
            draw_row,
            (tf.constant(0), tf.zeros([batch, height, width, 1])),
        )
        return images

    def serving_endpoints(self) -> dict:
        """Functions and input signatures that keras_gen.export writes, by name.

        The first is also `serving_default`.
        """
        images = tf.TensorSpec([None, *self.image_shape], tf.float32, name="images")
        return {
            "score": (
                lambda images: {"negative_log_likelihood": self.score(images)},
                [images],
            ),
            "sample": self._sample_endpoint(),
        }

    def _sample_endpoint(self):
        """`sample(num_samples, seed)`: the images `generate(num_samples, seed)` gives.

        base.sample_endpoint's bounds, refused at the signature before any work;
        the images come from pixel noise rather than latents.
        """

        def sample(num_samples, seed):
            checks = [
                tf.debugging.assert_positive(
                    num_samples, message="num_samples must be at least 1"
                ),
                tf.debugging.assert_less_equal(
                    num_samples,
                    base.MAX_EXPORTED_SAMPLES,
                    message=f"num_samples must be at most {base.MAX_EXPORTED_SAMPLES}; "
                    "ask several times for more",
                ),
            ]
            with tf.control_dependencies(checks):
                num_samples = tf.identity(num_samples)
            return {
                "images": self.sample_from_noise(self.sampling_noise(num_samples, seed))
            }

        signature = [
            tf.TensorSpec([], tf.int32, name="num_samples"),
            tf.TensorSpec([], tf.int64, name="seed"),
        ]
        return sample, signature

    def _check_images(self, images):
        images = tf.convert_to_tensor(images, tf.float32)
        if images.shape.rank != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"expected images of shape (batch, {', '.join(map(str, self.image_shape))}), "
                f"got {tuple(images.shape)}"
            )
        return images
