"""What every GAN shares: a generator from latents to tanh images, one optimizer per network."""

from typing import ClassVar

import keras
import tensorflow as tf

from keras_gen.models import base


class GAN(base.LatentFamily):
    """The generator half of a GAN, and compile state for one optimizer per network.

    A subclass builds `generator` (latents -> images in the tanh range [-1, 1])
    and its other networks, lists `network_optimizers` (optimizer attribute ->
    network attribute), and gives `compile` its optimizers' names and defaults
    through `_compile_networks`. The compile config then round-trips, so a
    reloaded .keras file comes back compiled.

    Args:
        image_size: side of the square images; 28, 32 and 64 all work.
        channels: 1 for grayscale, 3 for RGB.
        latent_dim: size of the generator's input noise.
        generator_filters: width of the generator's last hidden layer; the layers
            before it double it.
        seed: fixes the training noise: step t draws the same latents whatever
            the number of replicas.
    """

    network_optimizers: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        *,
        image_size: int = 64,
        channels: int = 3,
        latent_dim: int = 100,
        generator_filters: int = 64,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.channels = channels
        self.latent_dim = latent_dim
        self.generator_filters = generator_filters
        self.seed = seed
        for optimizer in self.network_optimizers:
            setattr(self, optimizer, None)  # set by compile

    def call(self, inputs, training=False):
        """Images in [0, 1] for latents (a conditional GAN: (latents, labels)).

        Unclipped, unlike decode.
        """
        latents, labels = self._call_inputs(inputs)
        return _unit_range(self._generate(latents, labels, training))

    def _generate(self, latents, labels, training):
        """Generated images in the generator's tanh range [-1, 1]."""
        return self.generator(
            self._generator_inputs(latents, labels), training=training
        )

    def _generator_inputs(self, latents, labels):
        """What the generator reads; a conditional subclass adds its labels."""
        return latents

    def _tanh_batch(self, data) -> tuple:
        """(real images moved to the generator's tanh range, labels) of a training batch."""
        real, labels = self._batch(data)
        return real * 2.0 - 1.0, labels

    def _decode(self, latents, labels) -> tf.Tensor:
        images = self._generate(latents, labels, training=False)
        return tf.clip_by_value(_unit_range(images), 0.0, 1.0)

    def serving_endpoints(self) -> dict:
        """Functions and input signatures that keras_gen.export writes, by name.

        "generate" takes latents (batch, latent_dim) (and a conditional GAN's labels
        (batch, heads)); "sample" draws them. The first is also `serving_default`.
        """
        return {"generate": self._decode_endpoint(), "sample": self._sample_endpoint()}

    def _compile_networks(self, chosen: dict, default, **kwargs):
        """Set each network's optimizer: `chosen[name]`, or `default(name)` if None."""
        super().compile(optimizer=None, **kwargs)  # Keras would add an unused RMSprop
        mixed = keras.mixed_precision.global_policy().name == "mixed_float16"
        for name, network in self.network_optimizers.items():
            optimizer = keras.optimizers.get(chosen.get(name) or default(name))
            if mixed and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                # What Keras's own compile does for model.optimizer, for each of ours.
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            optimizer.build(getattr(self, network).trainable_variables)
            setattr(self, name, optimizer)

    def get_compile_config(self):
        if not self.compiled:
            return {}
        return {
            name: keras.optimizers.serialize(getattr(self, name))
            for name in self.network_optimizers
        }

    def compile_from_config(self, config):
        self.compile(
            **{
                key: keras.optimizers.deserialize(value)
                for key, value in config.items()
                if key in self.network_optimizers
            }
        )


def _unit_range(images):
    """tanh-range images [-1, 1] -> [0, 1]."""
    return (images + 1.0) / 2.0
