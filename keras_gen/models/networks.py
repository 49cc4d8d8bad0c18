"""Network builders: the layers of every family, apart from the algorithms that train them.

A family module holds its training algorithm (train_step, losses, trackers) and
builds its networks here; variants of a network (a DCGAN discriminator, a WGAN-GP
critic, a projection discriminator) share their parts here.
"""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_gen.models import noise

# DCGAN, its conditional variant and WGAN-GP (Radford et al. 2016's networks).


def dcgan_initializer():
    """N(0, 0.02), DCGAN's weights: a new initializer per layer, made when the model
    is, so it is seeded by keras.utils.set_random_seed and no two layers share a draw."""
    return keras.initializers.RandomNormal(stddev=0.02)


def base_size(image_size: int) -> tuple[int, int]:
    """(side, doublings): the side the generator starts from, halving `image_size`
    while the result stays >= 4, and how many stride-2 layers reach `image_size`."""
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
    size, upsamplings = base_size(image_size)
    width = filters * 2 ** (upsamplings - 1)
    layers = [
        keras.Input((latent_dim,)),
        keras.layers.Dense(
            size * size * width, use_bias=False, kernel_initializer=dcgan_initializer()
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
                kernel_initializer=dcgan_initializer(),
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
            kernel_initializer=dcgan_initializer(),
        )
    )
    return keras.Sequential(layers, name="generator")


def discriminator_body(image_size: int, filters: int, normalization=None) -> list:
    """The layers DCGAN-style discriminators share: stride-2 4x4 convs doubling in
    width, each but the first normalized (Radford et al.: not the input layer),
    LeakyReLU. `normalization` makes a layer (default: synchronized batch norm)."""
    _, downsamplings = base_size(image_size)
    layers = []
    for i in range(downsamplings):
        layers.append(
            keras.layers.Conv2D(
                filters * 2**i,
                4,
                strides=2,
                padding="same",
                use_bias=i == 0,
                kernel_initializer=dcgan_initializer(),
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
    size, _ = base_size(image_size)
    layers = [
        keras.Input((image_size, image_size, channels)),
        *discriminator_body(image_size, filters),
        keras.layers.Conv2D(
            1,
            size,
            padding="valid",
            kernel_initializer=dcgan_initializer(),
            dtype="float32",
        ),
        keras.layers.Flatten(dtype="float32"),  # or mixed precision casts back
    ]
    return keras.Sequential(layers, name="discriminator")


def build_projection_discriminator(
    image_size: int, channels: int, filters: int, num_classes: int
) -> keras.Model:
    """(images in [-1, 1], labels (batch, 1)) -> logits psi(phi(x)) + embed(y) . phi(x).

    phi is the DCGAN discriminator's convolutions, flattened, and psi its linear
    read-out (a valid convolution over the whole map is a dense layer on the
    flattened map): with the class embedding at zero this is DCGAN's discriminator.
    """
    size, downsamplings = base_size(image_size)
    images = keras.Input((image_size, image_size, channels), name="images")
    labels = keras.Input((1,), dtype="int32", name="labels")
    hidden = images
    for layer in discriminator_body(image_size, filters):
        hidden = layer(hidden)
    features = keras.layers.Flatten(name="features")(hidden)
    # float32 from here on under a mixed-precision policy: these are the logits.
    unconditional = keras.layers.Dense(
        1, kernel_initializer=dcgan_initializer(), dtype="float32", name="psi"
    )(features)
    embedded = keras.layers.Embedding(
        num_classes,
        size * size * filters * 2 ** (downsamplings - 1),
        embeddings_initializer=dcgan_initializer(),
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


def build_critic(image_size: int, channels: int, filters: int) -> keras.Sequential:
    """Images in [-1, 1] -> one unbounded score: the DCGAN discriminator's convolutions.

    Layer normalization replaces batch normalization, as Gulrajani et al. advise:
    the penalty constrains the gradient of each example's score with respect to
    that example alone, which batch statistics would couple to the rest of the
    batch (and make depend on the replica count). GroupNormalization with one
    group is their layer norm: statistics over height, width and channels of each
    image, one scale and offset per channel.
    """
    size, _ = base_size(image_size)
    layers = [
        keras.Input((image_size, image_size, channels)),
        *discriminator_body(
            image_size,
            filters,
            lambda: keras.layers.GroupNormalization(groups=1, epsilon=1e-5),
        ),
    ]
    layers += [
        # No bias: the critic's losses depend on score differences only, so a
        # bias would never receive a gradient.
        keras.layers.Conv2D(
            1,
            size,
            padding="valid",
            use_bias=False,
            kernel_initializer=dcgan_initializer(),
            dtype="float32",
        ),
        # float32 too: a mixed-precision Flatten would cast the scores to float16.
        keras.layers.Flatten(dtype="float32"),
    ]
    return keras.Sequential(layers, name="critic")


# The articles' multilayer perceptrons: MLPGAN's and the VAE's network="mlp".

ACTIVATIONS = ("relu", "leaky_relu")


def _activation(name: str) -> keras.layers.Layer:
    """ReLU, or LeakyReLU with slope 0.2 (the GAN literature's, Radford et al.)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")
    return keras.layers.ReLU() if name == "relu" else keras.layers.LeakyReLU(0.2)


def build_mlp_generator(
    latent_dim: int, image_shape, units, batch_norm: bool
) -> keras.Sequential:
    """Latents -> tanh images: Dense, ReLU (then batch norm if asked) per width."""
    layers = [keras.Input((latent_dim,))]
    for width in units:
        layers += [keras.layers.Dense(width), keras.layers.ReLU()]
        if batch_norm:  # after the activation, as the article has it
            layers.append(keras.layers.BatchNormalization(synchronized=True))
    layers += [
        keras.layers.Dense(
            int(np.prod(image_shape)), activation="tanh", dtype="float32"
        ),
        keras.layers.Reshape(tuple(image_shape), dtype="float32"),
    ]
    return keras.Sequential(layers, name="generator")


def build_mlp_discriminator(
    image_shape, units, activation: str, dropout: float, seed: int
) -> keras.Sequential:
    """Images -> one logit: flattened, then Dense, activation (then dropout) per width."""
    layers = [keras.Input(tuple(image_shape)), keras.layers.Flatten()]
    for i, width in enumerate(units):
        layers += [keras.layers.Dense(width), _activation(activation)]
        if dropout:
            layers.append(ReplicaDropout(dropout, seed=seed * 1000 + i))
    layers.append(keras.layers.Dense(1, dtype="float32"))
    return keras.Sequential(layers, name="discriminator")


class _ReplicaNoise(keras.layers.Layer):
    """A layer that draws new noise at each training call, the same on one device
    as on N replicas: each call draws for the global batch from a stateless seed
    (the layer's own call count, a weight, so checkpoints resume it) and each
    replica keeps its rows (`noise.replica_uniform`). keras.layers.Dropout and
    Keras's random augmentation layers draw from a SeedGenerator that every replica
    copies, so each replica would draw the same noise for its own rows.
    """

    def __init__(self, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.calls = self.add_weight(
            shape=(),
            dtype="int64",
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
            name="calls",
        )

    def _uniform(self, inputs, shape):
        """Uniform [0, 1) noise of `shape` per row of `inputs`, new at each call."""
        self.calls.assign_add(1)
        seed = noise.step_seed(self.seed, self.calls, 0)
        return noise.replica_uniform(tf.shape(inputs)[0], shape, seed)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="keras_gen")
class ReplicaDropout(_ReplicaNoise):
    """Dropout whose masks are the same on one device as on N replicas together.

    Args:
        rate: the fraction of units dropped in training.
        seed: this layer's noise stream.
    """

    def __init__(self, rate: float, seed: int = 0, **kwargs):
        super().__init__(seed, **kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        self.rate = rate

    def call(self, inputs, training=False):
        if not training:
            return inputs
        uniform = self._uniform(inputs, tf.shape(inputs)[1:])
        kept = tf.cast(uniform >= self.rate, inputs.dtype)
        return inputs * kept / (1.0 - self.rate)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


@keras.saving.register_keras_serializable(package="keras_gen")
class ReplicaFlipAndShift(_ReplicaNoise):
    """Random horizontal flips and pixel shifts, the same on one device as on N replicas.

    A shift moves an image by a whole number of pixels, up to `shift` each way, and
    fills with zeros (the background), so no pixel is interpolated.

    Args:
        flip: mirror half the images left to right.
        shift: the largest shift in pixels, vertical and horizontal drawn apart.
        seed: this layer's noise stream.
    """

    def __init__(self, flip: bool = False, shift: int = 0, seed: int = 0, **kwargs):
        super().__init__(seed, **kwargs)
        if shift < 0:
            raise ValueError(f"shift must be a number of pixels >= 0, got {shift}")
        self.flip, self.shift = bool(flip), int(shift)

    def call(self, images, training=False):
        if not training:
            return images
        draws = self._uniform(images, [3])
        if self.flip:
            mirrored = (draws[:, 0] < 0.5)[:, None, None, None]
            images = tf.where(mirrored, tf.reverse(images, [2]), images)
        if self.shift:
            offsets = tf.cast(draws[:, 1:] * (2 * self.shift + 1), tf.int32)
            images = shifted(images, offsets[:, 0], offsets[:, 1], self.shift)
        return images

    def get_config(self):
        return {**super().get_config(), "flip": self.flip, "shift": self.shift}


def shifted(images, row_offsets, column_offsets, shift: int):
    """Image i moved down by shift - row_offsets[i] and right by shift -
    column_offsets[i] pixels (offsets in [0, 2 * shift]), zeros coming in."""
    height, width = images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [shift, shift], [shift, shift], [0, 0]])
    rows = row_offsets[:, None] + tf.range(height)
    columns = column_offsets[:, None] + tf.range(width)
    picked = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(picked, columns, axis=2, batch_dims=1)


def build_mlp_encoder(image_shape, units, latent_dim: int) -> keras.Sequential:
    """Images -> 2 * latent_dim numbers: flattened, Dense and LeakyReLU per width."""
    layers = [keras.Input(tuple(image_shape)), keras.layers.Flatten()]
    for width in units:
        layers += [keras.layers.Dense(width), _activation("leaky_relu")]
    layers.append(keras.layers.Dense(2 * latent_dim, dtype="float32"))
    return keras.Sequential(layers, name="encoder")


def build_mlp_decoder(image_shape, units, latent_dim: int) -> keras.Sequential:
    """Latents -> per-pixel parameters: Dense and LeakyReLU per width, mirrored."""
    layers = [keras.Input((latent_dim,))]
    for width in reversed(units):
        layers += [keras.layers.Dense(width), _activation("leaky_relu")]
    layers += [
        keras.layers.Dense(int(np.prod(image_shape)), dtype="float32"),
        keras.layers.Reshape(tuple(image_shape), dtype="float32"),
    ]
    return keras.Sequential(layers, name="decoder")


# The VAE's (and the conditional VAE's, with wider inputs).


def build_encoder(image_shape, filters, latent_dim: int) -> keras.Sequential:
    """Images -> 2 * latent_dim numbers: the posterior's mean and raw scale."""
    layers = [keras.Input(image_shape)]
    for width in filters:
        layers.append(
            keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")
        )
    # float32 outputs under a mixed-precision policy: they parameterise distributions.
    layers += [
        keras.layers.Flatten(),
        keras.layers.Dense(2 * latent_dim, dtype="float32"),
    ]
    return keras.Sequential(layers, name="encoder")


def build_decoder(image_shape, filters, latent_dim: int) -> keras.Sequential:
    """Latents -> per-pixel parameters (Bernoulli logits or Gaussian means)."""
    layers = _decoder_layers(image_shape, filters)
    return keras.Sequential([keras.Input((latent_dim,)), *layers], name="decoder")


def build_residual_encoder(image_shape, filters, latent_dim: int) -> keras.Model:
    """build_encoder with a residual block after each stride-2 convolution: twice
    the depth at each resolution, and an identity path that keeps it trainable."""
    images = keras.Input(image_shape)
    x = images
    for width in filters:
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(
            x
        )
        x = _residual_block(x, width)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(2 * latent_dim, dtype="float32")(x)
    return keras.Model(images, outputs, name="encoder")


def build_residual_decoder(image_shape, filters, latent_dim: int) -> keras.Model:
    """build_decoder with a residual block after each stride-2 transposed convolution."""
    latents = keras.Input((latent_dim,))
    x = latents
    for layer in _decoder_layers(image_shape, filters):
        x = layer(x)
        if isinstance(layer, keras.layers.Conv2DTranspose):
            x = _residual_block(x, layer.filters)
    return keras.Model(latents, x, name="decoder")


def _decoder_layers(image_shape, filters) -> list:
    """Dense to the lowest resolution, a stride-2 transposed convolution per width
    (mirroring the encoder), and a 3x3 convolution to the per-pixel parameters."""
    height, width, channels = image_shape
    scale = 2 ** len(filters)
    if height % scale or width % scale:
        raise ValueError(
            f"image_shape {tuple(image_shape)} must be divisible by 2**len(filters) = {scale}"
        )
    layers = [
        keras.layers.Dense(
            height // scale * width // scale * filters[-1], activation="relu"
        ),
        keras.layers.Reshape((height // scale, width // scale, filters[-1])),
    ]
    for width_ in reversed(filters):
        layers.append(
            keras.layers.Conv2DTranspose(
                width_, 3, strides=2, padding="same", activation="relu"
            )
        )
    layers.append(keras.layers.Conv2D(channels, 3, padding="same", dtype="float32"))
    return layers


def _residual_block(x, width: int):
    """relu(x + conv(relu(conv(x)))), 3x3 convolutions keeping the width."""
    h = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    h = keras.layers.Conv2D(width, 3, padding="same")(h)
    return keras.layers.ReLU()(keras.layers.Add()([x, h]))


# The classifier's.


def build_features(image_shape, filters, feature_dim: int) -> keras.Sequential:
    """Images -> feature_dim features: per width, a 3x3 conv then a stride-2 3x3 conv."""
    layers = [keras.Input(image_shape)]
    for width in filters:
        for strides in (1, 2):
            layers += [
                keras.layers.Conv2D(width, 3, strides=strides, padding="same"),
                # Momentum 0.9: moving statistics that catch up within a short run.
                keras.layers.BatchNormalization(momentum=0.9, synchronized=True),
                keras.layers.ReLU(),
            ]
    layers += [
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(feature_dim, activation="relu", dtype="float32"),
    ]
    return keras.Sequential(layers, name="features")


# Gated PixelCNN (van den Oord et al. 2016): two stacks of convolutions keep every
# pixel's prediction causal in raster order. The vertical stack sees the rows above
# (its output is shifted down one row before the horizontal stack reads it); the
# horizontal stack sees the pixels to the left in the current row. Together they
# cover everything before a pixel, with none of the original PixelCNN's blind spot.

# The paper's kernel sizes: a wide first layer, then 3x3 (as halves, see below).
FIRST_KERNEL_SIZE = 7
KERNEL_SIZE = 3


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


def build_gated_blocks(filters: int, num_layers: int) -> list:
    """A 7x7 mask-A block (it reads the image), then 3x3 mask-B blocks."""
    return [
        GatedBlock(
            filters,
            FIRST_KERNEL_SIZE if i == 0 else KERNEL_SIZE,
            "A" if i == 0 else "B",
            name=f"gated_block_{i}",
        )
        for i in range(num_layers)
    ]


def build_pixel_logits(filters: int) -> tuple:
    """The layers after the stacks: a 1x1 ReLU conv, then one logit per pixel."""
    hidden = keras.layers.Conv2D(filters, 1, activation="relu", name="output_hidden")
    # float32 logits under a mixed-precision policy: they parameterise Bernoullis.
    logits = keras.layers.Conv2D(1, 1, dtype="float32", name="output_logits")
    return hidden, logits


# Image-to-image: pix2pix's U-Net and PatchGAN (Isola et al. 2017), and the
# super-resolution generator (Ledig et al. 2017's SRResNet, as Lim et al. 2017 trim it).

# The U-Net's widths stop doubling at 8 times the first layer's, as the paper's do.
UNET_MAX_WIDTH_FACTOR = 8
# The paper's dropout sits in the three innermost decoder layers.
UNET_DROPOUT_LAYERS = 3


def _unet_depth(image_size: int) -> int:
    """Stride-2 layers from `image_size` down to 1x1; the size must be a power of 2."""
    depth = int(image_size).bit_length() - 1
    if image_size < 8 or 2**depth != image_size:
        raise ValueError(
            f"image_size={image_size}: the U-Net halves the image down to 1x1, so it "
            "must be a power of 2 of at least 8, such as 64 or 256"
        )
    return depth


def build_unet(
    image_size: int,
    input_channels: int,
    output_channels: int,
    filters: int,
    dropout: float,
    seed: int,
) -> keras.Model:
    """Inputs in [-1, 1] -> tanh images of the same size: pix2pix's U-Net generator.

    Encoder: 4x4 stride-2 convolutions down to 1x1, widths filters, 2 filters, ...
    up to 8 filters, batch norm on all but the outermost and innermost, LeakyReLU
    0.2. Decoder: 4x4 stride-2 transposed convolutions, batch norm, dropout in the
    three innermost (`ReplicaDropout`: the same masks on one device as on N
    replicas), ReLU, each concatenated with the encoder layer of its size (the
    skip connections that carry the input's detail across the bottleneck).
    """
    depth = _unet_depth(image_size)
    widths = [filters * min(2**i, UNET_MAX_WIDTH_FACTOR) for i in range(depth)]
    inputs = keras.Input((image_size, image_size, input_channels), name="inputs")
    skips, hidden = [], inputs
    for i, width in enumerate(widths):
        normalized = 0 < i < depth - 1
        hidden = _conv(width, 2, use_bias=not normalized)(hidden)
        if normalized:
            hidden = _batch_norm()(hidden)
        skips.append(keras.layers.LeakyReLU(0.2)(hidden))
        hidden = skips[-1]
    for i, (width, skip) in enumerate(zip(widths[-2::-1], skips[-2::-1])):
        hidden = _transposed_conv(width, use_bias=False)(hidden)
        hidden = _batch_norm()(hidden)
        if dropout and i < UNET_DROPOUT_LAYERS:
            hidden = ReplicaDropout(dropout, seed=seed * 1000 + i)(hidden)
        hidden = keras.layers.ReLU()(hidden)
        hidden = keras.layers.Concatenate()([hidden, skip])
    # float32 outputs under a mixed-precision policy.
    outputs = _transposed_conv(output_channels, activation="tanh", dtype="float32")(
        hidden
    )
    return keras.Model(inputs, outputs, name="generator")


def build_patch_discriminator(
    image_size: int, input_channels: int, output_channels: int, filters: int
) -> keras.Model:
    """(inputs, images), both in [-1, 1] -> logits (batch, size / 4, size / 4, 1).

    pix2pix's conditional PatchGAN, sized for 64x64: C64-C128 (stride 2), C256
    (stride 1), then a 4x4 convolution to one logit per position. Each logit
    judges a 34x34 patch of the pair, about half a 64x64 face, as the paper's
    70x70 PatchGAN judges about a quarter of a 256x256 image: realistic texture
    and local structure; the L1 term takes care of the low frequencies.
    """
    condition = keras.Input((image_size, image_size, input_channels), name="inputs")
    images = keras.Input((image_size, image_size, output_channels), name="images")
    hidden = keras.layers.Concatenate()([condition, images])
    for i, (width, strides) in enumerate(((1, 2), (2, 2), (4, 1))):
        hidden = _conv(filters * width, strides, use_bias=i == 0)(hidden)
        if i > 0:
            hidden = _batch_norm()(hidden)
        hidden = keras.layers.LeakyReLU(0.2)(hidden)
    logits = _conv(1, 1, dtype="float32")(hidden)
    return keras.Model([condition, images], logits, name="discriminator")


def _conv(width: int, strides: int, **kwargs) -> keras.layers.Conv2D:
    """A 4x4 convolution, "same" padding, N(0, 0.02) weights (the paper's)."""
    return keras.layers.Conv2D(
        width,
        4,
        strides=strides,
        padding="same",
        kernel_initializer=dcgan_initializer(),
        **kwargs,
    )


def _transposed_conv(width: int, **kwargs) -> keras.layers.Conv2DTranspose:
    """A 4x4 stride-2 transposed convolution, N(0, 0.02) weights."""
    return keras.layers.Conv2DTranspose(
        width,
        4,
        strides=2,
        padding="same",
        kernel_initializer=dcgan_initializer(),
        **kwargs,
    )


@keras.saving.register_keras_serializable(package="keras_gen")
class SubPixelUpsampling(keras.layers.Layer):
    """(h, w, c * s * s) -> (h * s, w * s, c): the pixel shuffle of a sub-pixel
    convolution (Shi et al. 2016), `tf.nn.depth_to_space`.

    A convolution at low resolution computes the s * s sub-pixels of every output
    pixel, so the expensive layers run at the small size, and there is no
    transposed convolution's checkerboard overlap.

    Args:
        scale: s, the factor of each side.
    """

    def __init__(self, scale: int, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, inputs):
        return tf.nn.depth_to_space(inputs, self.scale)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        scale = self.scale

        def times(side):
            return None if side is None else side * scale

        return (batch, times(height), times(width), channels // scale**2)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def build_super_resolution_generator(
    input_size: int, channels: int, filters: int, residual_blocks: int, scale: int
) -> keras.Model:
    """Images in [0, 1] -> images `scale` times larger, in [0, 1] (unclipped).

    SRResNet's shape (Ledig et al. 2017): a convolution, residual blocks with a long
    skip around them, then a sub-pixel convolution per doubling (each a conv to
    4 * filters channels, `SubPixelUpsampling(2)`, ReLU), then a convolution to
    the image. Without batch norm, as Lim et al. 2017 (EDSR) found it costs
    PSNR; 3x3 kernels throughout, the 16x16 inputs being small. The network adds
    its output to the bilinear enlargement of the input (a global residual, Kim et
    al. 2016), and that last convolution starts at zero: an untrained model is
    the bilinear baseline, and training learns the missing detail.
    """
    doublings = int(scale).bit_length() - 1
    if scale < 2 or 2**doublings != scale:
        raise ValueError(f"scale must be a power of 2 (2, 4, 8, ...), got {scale}")
    inputs = keras.Input((input_size, input_size, channels), name="inputs")
    head = keras.layers.Conv2D(filters, 3, padding="same")(
        keras.layers.Rescaling(2.0, offset=-1.0)(inputs)
    )
    hidden = head
    for _ in range(residual_blocks):
        block = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(
            hidden
        )
        block = keras.layers.Conv2D(filters, 3, padding="same")(block)
        hidden = keras.layers.Add()([hidden, block])
    hidden = keras.layers.Conv2D(filters, 3, padding="same")(hidden)
    hidden = keras.layers.Add()([head, hidden])
    for _ in range(doublings):
        hidden = keras.layers.Conv2D(4 * filters, 3, padding="same")(hidden)
        hidden = keras.layers.ReLU()(SubPixelUpsampling(2)(hidden))
    # float32 from here on under a mixed-precision policy: these are the images.
    detail = keras.layers.Conv2D(
        channels, 3, padding="same", kernel_initializer="zeros", dtype="float32"
    )(hidden)
    enlarged = keras.layers.UpSampling2D(
        scale, interpolation="bilinear", dtype="float32"
    )(inputs)
    outputs = keras.layers.Add(dtype="float32")([enlarged, detail])
    return keras.Model(inputs, outputs, name="generator")


# Diffusion's denoiser (Ho et al. 2020's U-Net, small).


class SinusoidalEmbedding(keras.layers.Layer):
    """Timestep indices (batch,) -> [sin(t w_i), cos(t w_i)], w_i = 10000^(-i / half).

    The Transformer's position features (Vaswani et al. 2017), as DDPM embeds time.
    """

    def __init__(self, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        half = dim // 2
        self.frequencies = np.exp(-math.log(10000.0) * np.arange(half) / half).astype(
            "float32"
        )

    def call(self, timesteps):
        angles = ops.cast(timesteps, "float32")[:, None] * self.frequencies[None, :]
        features = ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)
        return ops.cast(features, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}


def build_denoising_unet(
    image_shape,
    widths,
    residual_blocks: int,
    attention_levels: int,
    groups: int,
    time_embedding_dim: int,
    class_counts,
    name: str = "denoiser",
) -> keras.Model:
    """(noisy images, timesteps[, labels]) -> eps or v: DDPM's U-Net, small.

    Residual blocks of group norm, swish and 3x3 convolutions, the time (and
    class) embedding added between the convolutions; stride-2 convolutions down,
    nearest upsampling and a convolution up, skip connections concatenated;
    single-head self-attention at the `attention_levels` lowest levels. Each
    head's labels index an embedding with one more row, its null class. The
    last convolution of every residual branch and the output start at zero.
    """
    noisy = keras.Input(image_shape, name="noisy_images")
    timesteps = keras.Input((), dtype="int32", name="timesteps")
    heads = [len(class_counts)] if class_counts else []  # one labels input, or none
    labels = [keras.Input((n,), dtype="int32", name="labels") for n in heads]
    network_inputs = [noisy, timesteps, *labels]
    embedding = _step_embedding(
        network_inputs, class_counts, 4 * widths[0], time_embedding_dim
    )

    def attends(level):
        return level >= len(widths) - attention_levels

    x = keras.layers.Conv2D(widths[0], 3, padding="same")(noisy)
    skips = [x]
    for level, width in enumerate(widths):
        for _ in range(residual_blocks):
            x = _time_residual_block(x, embedding, width, groups)
            x = _self_attention(x, groups) if attends(level) else x
            skips.append(x)
        if level < len(widths) - 1:
            x = keras.layers.Conv2D(width, 3, strides=2, padding="same")(x)
            skips.append(x)
    x = _time_residual_block(x, embedding, widths[-1], groups)
    x = _self_attention(x, groups) if attention_levels else x
    x = _time_residual_block(x, embedding, widths[-1], groups)
    for level in reversed(range(len(widths))):
        for _ in range(residual_blocks + 1):
            x = keras.layers.Concatenate()([x, skips.pop()])
            x = _time_residual_block(x, embedding, widths[level], groups)
            x = _self_attention(x, groups) if attends(level) else x
        if level > 0:
            x = keras.layers.UpSampling2D(2, interpolation="nearest")(x)
            x = keras.layers.Conv2D(widths[level - 1], 3, padding="same")(x)
    x = keras.layers.GroupNormalization(groups)(x)
    x = keras.layers.Activation("swish")(x)
    # float32 under a mixed-precision policy: the loss compares it with unit noise.
    output = keras.layers.Conv2D(
        image_shape[-1], 3, padding="same", kernel_initializer="zeros", dtype="float32"
    )(x)
    return keras.Model(network_inputs, output, name=name)


def _step_embedding(network_inputs, class_counts, width: int, time_dim: int):
    """The timestep's sinusoidal embedding through two Dense layers, plus each
    head's class embedding (one more row: its null class), through swish."""
    timesteps, labels = network_inputs[1], network_inputs[2:]
    embedding = SinusoidalEmbedding(time_dim)(timesteps)
    embedding = keras.layers.Dense(width, activation="swish")(embedding)
    embedding = keras.layers.Dense(width)(embedding)
    for head, count in enumerate(class_counts or ()):
        embedding = embedding + keras.layers.Embedding(count + 1, width)(
            labels[0][:, head]
        )
    return keras.layers.Activation("swish")(embedding)


def _time_residual_block(x, embedding, width: int, groups: int):
    """x + conv(swish(norm(conv(swish(norm(x))) + dense(embedding)))), 1x1 skip if widths differ."""
    skip = x if x.shape[-1] == width else keras.layers.Conv2D(width, 1)(x)
    h = keras.layers.GroupNormalization(groups)(x)
    h = keras.layers.Activation("swish")(h)
    # No bias here: the embedding's projection, added next, has one.
    h = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(h)
    h = h + keras.layers.Reshape((1, 1, width))(keras.layers.Dense(width)(embedding))
    h = keras.layers.GroupNormalization(groups)(h)
    h = keras.layers.Activation("swish")(h)
    h = keras.layers.Conv2D(width, 3, padding="same", kernel_initializer="zeros")(h)
    return skip + h


def _self_attention(x, groups: int):
    """x + single-head self-attention over its pixels (softmax(q kᵀ / sqrt(c)) v)."""
    height, width, channels = x.shape[1:]
    h = keras.layers.GroupNormalization(groups)(x)
    qkv = keras.layers.Conv2D(3 * channels, 1)(h)
    qkv = keras.layers.Reshape((height * width, 3 * channels))(qkv)
    query, key, value = ops.split(qkv, 3, axis=-1)
    scores = ops.matmul(query, ops.transpose(key, (0, 2, 1))) / math.sqrt(channels)
    attended = ops.matmul(ops.softmax(scores, axis=-1), value)
    attended = keras.layers.Reshape((height, width, channels))(attended)
    return x + keras.layers.Conv2D(channels, 1, kernel_initializer="zeros")(attended)
