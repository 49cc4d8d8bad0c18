"""What image-to-image families share: `translate`, its checks, export and preview.

Not a family itself: Pix2Pix and SuperResolution are `Translator`s. Each trains on
(inputs, targets) batches, both in [0, 1], such as those of a paired dataset
(`keras_gen.data.load("faces_edges")`), and writes one method, `_translate`.
"""

from typing import ClassVar

import tensorflow as tf

from keras_gen import images as images_module
from keras_gen.models import base
from keras_gen.models import inputs as model_inputs

PREVIEW_EXAMPLES = 8


class Translator(base.Family):
    """An image-to-image family: `translate(inputs)` -> images in [0, 1].

    Subclasses keep `input_image_shape` (one input's (height, width, channels))
    and `image_shape` (one output's), and write `_translate(inputs, training)`:
    images in [0, 1], unclipped, for checked inputs in [0, 1]. They get
    `translate`, `call`, the exported `translate` signature and a TensorBoard
    preview of input / output / target rows. `generate` is refused: the output
    is a function of the input, there is nothing to sample.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({base.TRANSLATION, base.PREVIEW})

    def translate(self, inputs) -> tf.Tensor:
        """float32 images in [0, 1], (batch, *image_shape), for inputs in [0, 1].

        Inputs are what `keras_gen.data.paired` makes of a target image (a sketch,
        a grayscale photo, a small photo), (batch, *input_image_shape).
        """
        return model_inputs.in_batches(self._translated, self._checked_inputs(inputs))

    def call(self, inputs, training=False):
        """Images for inputs in [0, 1]; unclipped, unlike translate."""
        return self._translate(inputs, training)

    def _translate(self, inputs, training) -> tf.Tensor:
        """Images in [0, 1] (unclipped) for checked inputs in [0, 1]."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement _translate"
        )

    def _translated(self, inputs) -> tf.Tensor:
        return tf.clip_by_value(self._translate(inputs, training=False), 0.0, 1.0)

    def serving_endpoints(self) -> dict:
        """`translate`: inputs (batch, *input_image_shape) -> images; also `serving_default`."""

        def translate(batch, labels):
            return {"images": self._translated(self._checked_inputs(batch))}

        spec = tf.TensorSpec([None, *self.input_image_shape], tf.float32, name="inputs")
        return {"translate": self._endpoint(translate, spec)}

    def preview(self, inputs=None, targets=None) -> dict:
        """Input / output / target rows of a fixed training batch, for TensorBoard.

        TensorBoard passes the batch's (inputs, targets) where a generative family
        takes (images, labels).
        """
        self.require(base.PREVIEW, "preview")
        if inputs is None:
            return {}
        inputs = inputs[:PREVIEW_EXAMPLES]
        rows = [inputs, self.translate(inputs)]
        if targets is not None:
            rows.append(targets[:PREVIEW_EXAMPLES])
        shown, columns = images_module.side_by_side(*rows)
        return {"translations": (shown, columns)}

    def _checked_inputs(self, batch) -> tf.Tensor:
        """float32 inputs of the right shape, a row at least, pixels in [0, 1]."""
        batch = tf.convert_to_tensor(batch, tf.float32)
        expected = tuple(self.input_image_shape)
        if batch.shape.rank != 4 or tuple(batch.shape[1:]) != expected:
            raise ValueError(
                f"{type(self).__name__} translates inputs of shape (batch, "
                f"{', '.join(map(str, expected))}), got {tuple(batch.shape)}; make "
                "them from target images with keras_gen.data.paired, or from any "
                "photo with `keras-gen translate`"
            )
        return model_inputs.checked_pixels(batch, "inputs")

    def _pair(self, data) -> tuple:
        """(inputs, targets) of a training batch, or a ValueError saying how to get them."""
        data = data[0] if isinstance(data, (tuple, list)) and len(data) == 1 else data
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise ValueError(
                f"{type(self).__name__} trains on (inputs, targets) batches in [0, 1]: "
                "fit(inputs, targets), or a paired dataset such as "
                "keras_gen.data.load('faces_edges')"
            )
        pair = [tf.convert_to_tensor(part, tf.float32) for part in data]
        for part, name, shape in zip(
            pair, ("inputs", "targets"), (self.input_image_shape, self.image_shape)
        ):
            if tuple(part.shape[1:]) != tuple(shape):
                raise ValueError(
                    f"{type(self).__name__} trains on {name} of shape (batch, "
                    f"{', '.join(map(str, shape))}), got {tuple(part.shape)}; is "
                    "this the paired dataset the model was made for?"
                )
        return tuple(pair)


def tanh_range(images):
    """[0, 1] -> [-1, 1], the range of the networks' tanh outputs and of the losses
    the papers weigh."""
    return images * 2.0 - 1.0


def unit_range(images):
    """[-1, 1] -> [0, 1]."""
    return (images + 1.0) / 2.0
