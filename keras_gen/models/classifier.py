"""Image classifier: the domain feature extractor that keras_gen's evaluation relies on."""

from typing import ClassVar

import keras
import tensorflow as tf

from keras_gen import losses
from keras_gen.models import base, inputs, networks


@base.family
class Classifier(base.Family):
    """A small CNN that labels images with one or more heads of classes.

    Trained on a dataset's real labels, it gives evaluation what the FID Inception
    network gives for photos, but offline and in the data's own domain: features
    (the layer before the heads) for FID, KID and precision/recall, and class
    probabilities for the Inception-style score, mode coverage and checking that a
    conditional model draws what was asked. Dropout and augmentation act in
    training only, so the features evaluation uses stay deterministic.

    Args:
        image_shape: (height, width, channels) of images in [0, 1].
        class_names: head name -> class names; label column i is head i, the
            class index is the position in its list.
        filters: widths of the convolution stages; each halves the resolution.
        feature_dim: size of the feature vector evaluation uses.
        dropout: rate of dropout between the features and the heads; 0 for none.
        flip: mirror half the training images left to right (not for digits).
        shift: shift training images by up to this many pixels each way.
        seed: the noise stream of dropout and augmentation.

    Example:
        model = keras_gen.models.Classifier((28, 28, 1), {"digit": list("0123456789")})
        model.compile(optimizer="adam")
        model.fit(images_and_labels, epochs=3)
        model.probabilities(images)["digit"]  # (batch, 10)
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({base.CLASSIFY})
    tuple_arguments: ClassVar[tuple[str, ...]] = ("image_shape", "filters")

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (28, 28, 1),
        class_names: dict | None = None,
        filters: tuple[int, ...] = (32, 64, 128),
        feature_dim: int = 128,
        dropout: float = 0.0,
        flip: bool = False,
        shift: int = 0,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not class_names:
            raise ValueError(
                "class_names must name at least one head, e.g. {'digit': ['0', ..., '9']}"
            )
        self.image_shape = tuple(image_shape)
        self.class_names = {head: list(names) for head, names in class_names.items()}
        self.filters = tuple(filters)
        self.feature_dim = feature_dim
        self.dropout, self.flip, self.shift, self.seed = dropout, flip, shift, seed
        # Made only when asked for: presets trained without them load unchanged.
        self.flip_and_shift = (
            networks.ReplicaFlipAndShift(flip, shift, seed, name="flip_and_shift")
            if flip or shift
            else None
        )
        self.feature_network = networks.build_features(
            self.image_shape, self.filters, feature_dim
        )
        self.feature_dropout = (
            networks.ReplicaDropout(dropout, seed=seed * 1000 + 1, name="dropout")
            if dropout
            else None
        )
        self.heads = [
            keras.layers.Dense(len(names), dtype="float32", name=f"{head}_logits")
            for head, names in self.class_names.items()
        ]
        for head in self.heads:
            head.build((None, feature_dim))
        self.trackers = {
            "loss": keras.metrics.Mean(name="loss"),
            **{
                f"{head}_accuracy": keras.metrics.SparseCategoricalAccuracy(
                    name=f"{head}_accuracy"
                )
                for head in self.class_names
            },
        }
        self.build()

    def call(self, images, training=False):
        """Logits per head, as a list in class_names order."""
        if self.flip_and_shift is not None:
            images = self.flip_and_shift(images, training=training)
        features = self.feature_network(images, training=training)
        if self.feature_dropout is not None:
            features = self.feature_dropout(features, training=training)
        return [head(features) for head in self.heads]

    def train_step(self, data):
        images, labels = self._split(data)
        with tf.GradientTape() as tape:
            logits = self(images, training=True)
            per_example = self._per_example_losses(logits, labels)
            loss = self.optimizer.scale_loss(
                losses.average_over_global_batch(per_example)
            )
        weights = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return self._track_predictions(per_example, logits, labels)

    def test_step(self, data):
        images, labels = self._split(data)
        logits = self(images, training=False)
        return self._track_predictions(
            self._per_example_losses(logits, labels), logits, labels
        )

    def _split(self, data):
        return inputs.labelled_batch(data, "Classifier", len(self.heads))

    def _per_example_losses(self, logits, labels):
        """Per-example sum over heads of the cross-entropy, in nats."""
        return tf.add_n(
            [
                keras.losses.sparse_categorical_crossentropy(
                    labels[:, i], head_logits, from_logits=True
                )
                for i, head_logits in enumerate(logits)
            ]
        )

    def _track_predictions(self, per_example, logits, labels):
        for i, head in enumerate(self.class_names):
            self.trackers[f"{head}_accuracy"].update_state(labels[:, i], logits[i])
        return self._track(loss=per_example)

    def features(self, images) -> tf.Tensor:
        """(batch, feature_dim) float32 features of images in [0, 1]."""
        images = self._checked(images)
        return inputs.in_batches(
            lambda batch: self.feature_network(batch, training=False), images
        )

    def probabilities(self, images) -> dict:
        """Head name -> (batch, classes) class probabilities."""
        features = self.features(images)
        return {
            name: tf.nn.softmax(head(features))
            for name, head in zip(self.class_names, self.heads)
        }

    def serving_endpoints(self) -> dict:
        """`classify`: images -> features and each head's class probabilities."""

        def classify(images):
            features = self.feature_network(self._checked(images), training=False)
            outputs = {"features": features}
            for name, head in zip(self.class_names, self.heads):
                outputs[f"{name}_probabilities"] = tf.nn.softmax(head(features))
            return outputs

        spec = tf.TensorSpec([None, *self.image_shape], tf.float32, name="images")
        return {"classify": (classify, [spec])}

    def _checked(self, images):
        return inputs.checked_images(images, self.image_shape)
