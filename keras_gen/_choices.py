"""The names and defaults that keras_gen's API accepts and `keras-gen` offers as flags.

They live in this module, which imports nothing heavy, so that the command's parser
can list them, and answer --help or a mistyped flag, before TensorFlow loads. Each
API module takes its own from here (zoo.EVALUATION_PARTS, training.STRATEGIES, ...).
"""

# The parts of an evaluation, each measurable alone (`keras-gen evaluate --measure`),
# so a slow sampler's card can be measured a part at a time. test: the model's test
# metrics and likelihood; samples: sample, feature and memorisation metrics
# (translations, for image-to-image); steps: FID and time at each number of sampling
# steps; conditions: per requested class, classifier agreement and FID.
EVALUATION_PARTS = ("test", "samples", "steps", "conditions")
QUANTIZATIONS = ("none", "float16", "dynamic_range")  # of a TFLite export
STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")  # of training
LEARNING_RATE_DECAYS = ("cosine",)  # of a training run's constant rate, to zero
INTERPOLATIONS = ("slerp", "linear")  # paths between two latents
EVAL_SAMPLES = 500  # samples, or test images, per point of a training curve


def checked_parts(parts) -> frozenset:
    """The evaluation parts named, as a set; an unknown or missing part is refused."""
    parts = [parts] if isinstance(parts, str) else list(parts)
    unknown = [part for part in parts if part not in EVALUATION_PARTS]
    if unknown or not parts:
        what = f"unknown part {unknown[0]!r}" if unknown else "no part named"
        raise ValueError(f"measure: {what}; give some of {', '.join(EVALUATION_PARTS)}")
    return frozenset(parts)
