"""The family contract: what every keras_gen model declares, and what it gets for it.

A family is a `Family` subclass registered with `@family`. Its constructor
arguments are its config, it builds its networks when constructed, and it
declares what it can do in `capabilities`: callers ask `model.can(SAMPLES)` or
`model.require(SAMPLES, "generate images")`, never hasattr. A generative family
writes one method, `_sample` (or `_decode`, for a `LatentFamily`), and gets
`generate`, the exported `sample` signature and its TensorBoard preview from here.

Adding a family: its module with `@base.family` on the class (models/__init__.py
imports every module of the package), one entry in `tests/tiny.py`, its own tests,
a preset.
"""

import inspect
from inspect import Parameter
from typing import ClassVar

import keras
import tensorflow as tf

from keras_gen.models import conditioning, inputs, noise

# Capabilities, and the methods or attributes each promises.
# generate(num_samples, seed=None, **conditions) -> images in [0, 1]
SAMPLES = "samples"
# negative_log_likelihood(images, **conditions) -> nats per image; likelihood_bound
LIKELIHOOD = "likelihood"
CONDITIONS = "conditions"  # conditions: head -> class names
RECONSTRUCTION = "reconstruction"  # encode(images, **c), reconstruct(images, **c)
TRANSLATION = "translation"  # translate(inputs) -> images
PREVIEW = "preview"  # preview(images, labels) -> what TensorBoard shows
CLASSIFY = "classify"  # features(images), probabilities(images)
# inpaint(images, missing, seed) -> images with the missing (1) pixels filled in
INPAINTING = "inpainting"
CAPABILITIES = (
    SAMPLES,
    LIKELIHOOD,
    CONDITIONS,
    RECONSTRUCTION,
    TRANSLATION,
    PREVIEW,
    CLASSIFY,
    INPAINTING,
)

# The exported `sample` refuses larger requests before allocating anything.
MAX_EXPORTED_SAMPLES = 1024
PREVIEW_SAMPLES = 16
PREVIEW_SEED = 0

# Every registered family by class name: what keras_gen declares public.
FAMILIES: dict[str, type] = {}


class CapabilityError(ValueError):
    """A model was asked for something it does not declare it can do."""


def family(cls: type) -> type:
    """Register a family: for Keras serialization ("keras_gen>Name") and in FAMILIES.

    Example:
        @base.family
        class DCGAN(gan.GAN): ...
    """
    if not issubclass(cls, Family):
        raise TypeError(f"{cls.__name__} is no base.Family; only families register")
    FAMILIES[cls.__name__] = keras.saving.register_keras_serializable(
        package="keras_gen"
    )(cls)
    return cls


def mean_trackers(*names: str) -> dict:
    """{name: keras.metrics.Mean(name=name)}: a family's trackers, in log order."""
    return {name: keras.metrics.Mean(name=name) for name in names}


class Family(keras.Model):
    """The base of every family: declared capabilities, config, generation, export.

    Subclasses set `capabilities`, name their tuple-valued constructor arguments in
    `tuple_arguments` (JSON gives them back as lists), keep every constructor
    argument as an attribute of the same name, set `trackers` (name -> metric, in
    the order fit logs them; `mean_trackers` makes them), and end their
    constructor with `self.build()`. A conditional family also keeps `conditions`
    (head -> tuple of class names, see `conditioning.checked_conditions`). A
    family that extends another takes its own arguments and passes the rest on
    through **kwargs: its constructor's signature then lists both (see
    `_constructor_signature`).
    """

    capabilities: ClassVar[frozenset[str]] = frozenset()
    tuple_arguments: ClassVar[tuple[str, ...]] = ()
    # How a preset of this family is made, if not by `keras-gen train` from scratch
    # (a family whose fit starts from another model's trained networks).
    made_by: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in vars(cls):
            cls.__init__.__signature__ = _constructor_signature(cls)

    def build(self, input_shape=None):
        # fit() never calls the model itself, so it would never build it: every
        # network is built on creation, and the model with them.
        self.built = True

    def decay_windows(self, steps: int) -> dict[str, tuple[int, int]]:
        """(first, count) of the updates in which each optimizer's network trains,
        over a run of `steps` steps, for `keras-gen train --learning-rate-decay`.
        An optimizer not named updates once a step, over the whole run: (0, steps).
        """
        del steps  # every optimizer of most families
        return {}

    def can(self, capability: str) -> bool:
        """Whether this model declares `capability` (one of CAPABILITIES)."""
        if capability not in CAPABILITIES:
            raise ValueError(
                f"unknown capability {capability!r}; known: {', '.join(CAPABILITIES)}"
            )
        return capability in self.capabilities

    def require(self, capability: str, action: str) -> None:
        """Raise CapabilityError, saying what the model can do, unless it can `capability`."""
        if not self.can(capability):
            found = ", ".join(sorted(self.capabilities)) or "nothing"
            raise CapabilityError(
                f"{type(self).__name__} cannot {action}: it has no {capability!r} "
                f"capability (it has: {found})"
            )

    @classmethod
    def arguments(cls) -> list[str]:
        """The constructor's argument names: exactly the keys of the config."""
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
        return [
            p.name
            for p in parameters
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_config(self):
        return {
            **super().get_config(),
            **{name: self._config_value(name) for name in self.arguments()},
        }

    def _config_value(self, name: str):
        """An argument as the config holds it: JSON's lists, but declared tuples."""
        value = getattr(self, name)
        if name in self.tuple_arguments:
            return tuple(value)
        if isinstance(value, dict):
            return {key: _plain(item) for key, item in value.items()}
        return _plain(value)

    @classmethod
    def from_config(cls, config):
        return cls(
            **{
                key: tuple(value)
                if key in cls.tuple_arguments and isinstance(value, list)
                else value
                for key, value in config.items()
            }
        )

    def generate(
        self, num_samples: int, seed: int | None = None, **conditions
    ) -> tf.Tensor:
        """`num_samples` float32 images in [0, 1]; the same seed gives the same images.

        A conditional model takes each head as a class name or index for every
        sample, or a sequence of one per sample, e.g. generate(16, seed=0,
        gender="female"); heads left out cycle through their classes.
        """
        num_samples, labels = self._sampling_request(num_samples, conditions)
        return self._sample(num_samples, seed, labels)

    def _sampling_request(self, num_samples, conditions: dict) -> tuple:
        """(num_samples, labels) of a checked `generate` request; labels None if
        unconditional, heads left out cycling through their classes."""
        self.require(SAMPLES, "generate images")
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        return int(num_samples), self._labels(conditions, num_samples, cycle=True)

    def _sample(self, num_samples, seed, labels) -> tf.Tensor:
        """What `generate` and the exported `sample` return, from checked arguments.

        `num_samples` and `seed` (None: fresh noise) may be tensors, as in the
        exported signature; `labels` are checked int32 (num_samples, heads), or
        None for an unconditional model.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement _sample")

    def _compiled(self, method: str):
        """The method named `method` as a tf.function made once per model, when called
        eagerly; the plain method in a graph (an exported signature traces that).

        Eagerly, Keras runs a network layer by layer, op by op, from Python: one
        image from dcgan_faces cost five times the SavedModel's graph. The compiled
        function traces once per input signature (shapes are relaxed to a free batch
        size from the second one on, so new batch sizes do not retrace) and then
        replays its graph. Arguments must be tensors or None: a Python number would
        be traced as a constant, once per value.
        """
        if not tf.executing_eagerly():
            return getattr(self, method)
        # In __dict__ directly: not an attribute Keras tracks, nor one SavedModels save.
        functions = self.__dict__.setdefault("_compiled_functions", {})
        if method not in functions:
            functions[method] = tf.function(
                getattr(self, method), reduce_retracing=True
            )
        return functions[method]

    def preview(self, images=None, labels=None) -> dict:
        """What TensorBoard shows after an epoch: name -> (images in [0, 1], columns).

        `images` (and a conditional model's `labels`, int32 (batch, heads)) are a
        fixed training batch, for families that show what they make of it; columns
        None lets the grid choose.
        """
        self.require(PREVIEW, "preview")
        if not self.can(SAMPLES):
            return {}
        return {"samples": (self.generate(PREVIEW_SAMPLES, seed=PREVIEW_SEED), None)}

    def _labels(self, conditions: dict, count, cycle: bool = False):
        """Checked labels (count, heads) for a request's conditions, None if unconditional.

        Per-row methods need every head; `generate` (cycle=True) cycles the others.
        """
        if not conditions and not self.can(CONDITIONS):
            return None
        self.require(CONDITIONS, f"take conditions ({', '.join(conditions)})")
        make = conditioning.cycled_labels if cycle else conditioning.row_labels
        return make(int(count), self.conditions, conditions)

    def _checked_labels(self, labels, count):
        """Labels int32 (count, heads) in range for the conditions; None if unconditional."""
        if not self.can(CONDITIONS):
            return None
        if labels is None:
            raise ValueError(
                f"{type(self).__name__} needs labels, int32 (batch, "
                f"{len(self.conditions)}), for the heads {list(self.conditions)}"
            )
        return conditioning.checked_labels(labels, self.conditions, count)

    def _batch(self, data) -> tuple:
        """(images, labels) of a training batch: a conditional model's labels, checked;
        None for others (which ignore labels a batch carries)."""
        if not self.can(CONDITIONS):
            return inputs.images(data), None
        images, labels = inputs.labelled_batch(
            data, type(self).__name__, len(self.conditions)
        )
        return images, self._checked_labels(labels, tf.shape(images)[0])

    def _call_inputs(self, call_inputs):
        """(x, labels) of a call: a conditional model is called on (x, labels)."""
        if not self.can(CONDITIONS):
            return call_inputs, None
        x, labels = call_inputs
        return x, self._checked_labels(labels, tf.shape(x)[0])

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _track(self, **per_example) -> dict:
        """Add per-example values to the trackers of those names; return fit's logs."""
        for name, values in per_example.items():
            self.trackers[name].update_state(values)
        return self._logs()

    def _logs(self) -> dict:
        """Tracker results as train_step/test_step return them to fit.

        Under MultiWorkerMirroredStrategy, Keras 3 reduces these with
        reduce("MEAN", axis=0), which fails on scalars (tensorflow#72388); there
        each result goes as a vector of one, which reduces to the same scalar.
        """
        results = {metric.name: metric.result() for metric in self.metrics}
        if isinstance(
            tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy
        ):
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results

    def _endpoint(self, function, *specs) -> tuple:
        """(function, signature) of an exported per-row signature.

        `function(*inputs, labels)` returns a dict of outputs. A conditional
        model's signature takes one more input, `labels` int32 (batch, heads),
        checked against its conditions; other models' functions get labels=None.
        """
        if not self.can(CONDITIONS):
            return (lambda *rows: function(*rows, None)), list(specs)

        def endpoint(*rows_and_labels):
            *rows, labels = rows_and_labels
            return function(*rows, self._checked_labels(labels, tf.shape(rows[0])[0]))

        labels = tf.TensorSpec([None, len(self.conditions)], tf.int32, name="labels")
        return endpoint, [*specs, labels]

    def _sample_endpoint(self) -> tuple:
        """(function, signature) of the exported `sample(num_samples, seed)`: the
        images `generate(num_samples, seed)` gives.

        A conditional model's takes `labels` int32 (heads,) too: one class per head
        for every sample, as generate(num_samples, seed, head=index, ...).
        Requests outside 1..MAX_EXPORTED_SAMPLES are refused at the signature,
        before any memory is allocated for them.
        """
        signature = [
            tf.TensorSpec([], tf.int32, name="num_samples"),
            tf.TensorSpec([], tf.int64, name="seed"),
        ]
        if self.can(CONDITIONS):
            heads = len(self.conditions)
            signature.append(tf.TensorSpec([heads], tf.int32, name="labels"))

        def sample(num_samples, seed, labels=None):
            num_samples = _bounded(num_samples)
            if labels is not None:
                labels = self._checked_labels(labels[None], None)
                labels = tf.tile(labels, [num_samples, 1])
            return {"images": self._sample(num_samples, seed, labels)}

        return sample, signature


class NetworkOptimizers:
    """One optimizer per network, and a compile config that round-trips (a mixin).

    A family lists `network_optimizers` (optimizer attribute -> network
    attribute), sets each optimizer attribute to None when constructed, and gives
    `compile` its optimizers' names and defaults through `_compile_networks`. The
    compile config then round-trips, so a reloaded .keras file comes back
    compiled. GANs, Pix2Pix, SuperResolution and DBN share it.
    """

    network_optimizers: ClassVar[dict[str, str]] = {}

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
        config = {
            name: keras.optimizers.serialize(getattr(self, name))
            for name in self.network_optimizers
        }
        if self.steps_per_execution != 1:  # several steps per call: small models
            config["steps_per_execution"] = self.steps_per_execution
        return config

    def compile_from_config(self, config):
        self.compile(
            **{
                key: keras.optimizers.deserialize(value)
                for key, value in config.items()
                if key in self.network_optimizers
            },
            steps_per_execution=config.get("steps_per_execution", 1),
        )


class LatentFamily(Family):
    """A family that generates by decoding standard normal latents (batch, latent_dim).

    Subclasses keep `latent_dim` and write `_decode(latents, labels)`; they get
    `decode`, `generate` and the exported decode and `sample` signatures.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({SAMPLES, PREVIEW})

    def decode(self, latents, **conditions) -> tf.Tensor:
        """Images in [0, 1] for latents (batch, latent_dim).

        A conditional model needs every head: a class name or index for all rows,
        or one per row.
        """
        latents = inputs.checked_latents(latents, self.latent_dim)
        labels = self._labels(conditions, latents.shape[0])
        return self._compiled("_decode")(latents, labels)

    def _decode(self, latents, labels) -> tf.Tensor:
        """Images in [0, 1] for checked latents and labels (None if unconditional)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _decode")

    def _sample(self, num_samples, seed, labels, truncation=None) -> tf.Tensor:
        """Decoded standard normal latents (truncated to [-truncation, truncation])."""
        latents = noise.standard_normal(num_samples, self.latent_dim, seed, truncation)
        return inputs.in_batches(self._compiled("_decode"), latents, labels)

    def _decode_endpoint(self) -> tuple:
        """(function, signature) of the exported decode: latents[, labels] -> images."""

        def decode(latents, labels):
            latents = inputs.checked_latents(latents, self.latent_dim)
            return {"images": self._decode(latents, labels)}

        latents = tf.TensorSpec([None, self.latent_dim], tf.float32, name="latents")
        return self._endpoint(decode, latents)


def _constructor_signature(cls: type) -> inspect.Signature:
    """`cls.__init__`'s signature with the arguments its **kwargs passes on.

    A family extending another (ConditionalVAE extends VAE) declares only its own
    arguments; those of the family it extends follow, keyword-only, so that
    get_config, preset cards and help() see every argument, each declared once.
    The order: own positional arguments, inherited ones, own keyword-only ones.
    """
    own = inspect.signature(cls.__init__)
    parameters = list(own.parameters.values())
    parent = next(k for k in cls.__mro__[1:] if "__init__" in vars(k))
    if not issubclass(parent, Family) or parameters[-1].kind != Parameter.VAR_KEYWORD:
        return own
    names = {p.name for p in parameters}
    inherited = [
        p.replace(kind=Parameter.KEYWORD_ONLY)
        for p in list(inspect.signature(parent.__init__).parameters.values())[1:]
        if p.kind != Parameter.VAR_KEYWORD and p.name not in names
    ]
    positional = [p for p in parameters if p.kind == Parameter.POSITIONAL_OR_KEYWORD]
    keyword = [p for p in parameters if p.kind == Parameter.KEYWORD_ONLY]
    return own.replace(parameters=[*positional, *inherited, *keyword, parameters[-1]])


def _bounded(num_samples):
    """`num_samples`, asserted to be in 1..MAX_EXPORTED_SAMPLES when the graph runs."""
    checks = [
        tf.debugging.assert_positive(
            num_samples, message="num_samples must be at least 1"
        ),
        tf.debugging.assert_less_equal(
            num_samples,
            MAX_EXPORTED_SAMPLES,
            message=f"num_samples must be at most {MAX_EXPORTED_SAMPLES}; "
            "ask several times for more",
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(num_samples)


def _plain(value):
    """JSON's form of a config value: tuples as lists."""
    return list(value) if isinstance(value, (tuple, list)) else value
