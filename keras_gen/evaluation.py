"""Numbers for a preset's card, each measured on held-out data by a named command.

`evaluate` measures one model against one dataset split and returns a report: every
metric with its value, the feature extractor (name and sha256), sample counts, the
seed and the command. Sample metrics come with their floor: the same metrics for
real images of the other split in place of generated ones, i.e. what a perfect
model would score with this many samples.
"""

import contextlib
import dataclasses
import inspect
import os
import platform
import re
import shlex
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_gen import data, features, metrics, privacy, progress
from keras_gen import images as images_module
from keras_gen._choices import EVALUATION_PARTS, checked_parts
from keras_gen.models import base, conditioning

DIVERSITY = "pixel diversity, generated / test"
SHARPNESS = "sharpness (mean squared Laplacian), generated / test"
NLL_IMAGES = 2000  # test images the importance-weighted NLL is averaged over
MEMORISATION_TRAIN_IMAGES = 10000  # training images searched for nearest neighbours
TIMED_SAMPLES = 64
REAL_CHUNK = 1000  # real images converted to float32 and classified at a time
# A model that samples in steps (diffusion) is measured at each of these counts.
SAMPLING_STEPS = (10, 25, 50, 100)


@dataclasses.dataclass
class _Run:
    """What every section of one evaluation shares."""

    model: keras.Model
    spec: dict
    splits: data.Splits
    num_samples: int
    seed: int
    reference: str
    report: dict
    rng: np.random.Generator
    class_samples: int
    measure: frozenset = frozenset(EVALUATION_PARTS)
    part: str | None = None  # the part being measured, recorded with each metric

    def add(self, name, value, **extra):
        metric = {"name": name, "value": float(value), **extra}
        if self.part is not None:
            metric["part"] = self.part
        self.report["metrics"].append(metric)

    @contextlib.contextmanager
    def measuring(self, part: str):
        """Tag the metrics added inside with `part`, so that a card re-measuring
        that part can drop the part's old numbers, even those renamed since."""
        self.part = part
        try:
            yield
        finally:
            self.part = None

    @property
    def other(self) -> str:
        return "test" if self.reference == "train" else "train"


def evaluate(
    model: keras.Model,
    data_spec: dict,
    command: str,
    *,
    num_samples: int = 1000,
    seed: int = 0,
    data_source: str | os.PathLike | None = None,
    feature_extractor: str = "auto",
    reference: str = "train",
    splits: data.Splits | None = None,
    trained: dict | None = None,
    class_samples: int | None = None,
    measure=EVALUATION_PARTS,
) -> dict:
    """Measure `model` on its dataset; a report whose "metrics" go into the card.

    Args:
        model: any keras_gen model; generative models also get sample metrics.
        data_spec: the card's data block (dataset, binarize, labels).
        command: the command line that reproduces this measurement.
        num_samples: generated images (and per class, for conditional models).
        seed: fixes the generated images and every random subset.
        data_source: the dataset's file or folder (default: the usual places).
        feature_extractor: "auto" (the dataset's classifier preset), "inception",
            or a classifier preset name; "none" skips feature metrics.
        reference: the real split generated images are compared with.
        splits: the dataset's splits when the caller has loaded some already.
        trained: the card's training record (steps, batch size): DP-SGD's budget.
        class_samples: images per class (default `num_samples`): fewer for slow samplers.
        measure: the parts to measure (EVALUATION_PARTS); each part's numbers
            are the same measured alone or with the others.
    """
    if reference not in data.SPLITS:
        raise ValueError(f"reference must be one of {data.SPLITS}, got {reference!r}")
    dataset = data_spec["dataset"]
    report = {"command": command, "dataset": dataset, "reference": reference}
    report.update(seed=seed, metrics=[])
    run = _Run(
        model,
        data_spec,
        splits or data.Splits(dataset, data_source),
        num_samples,
        seed,
        reference,
        report,
        np.random.default_rng(seed),
        class_samples or num_samples,
        checked_parts(measure),
    )
    if not run.measure & _parts_of(model):
        raise ValueError(
            f"measure: a {type(model).__name__} has nothing to measure in "
            f"{', '.join(sorted(run.measure))} (steps is for models that sample in "
            "steps, conditions for conditional ones)"
        )
    _measure_parts(run, feature_extractor, trained)
    return _with_command(report)


def _measure_parts(run: _Run, feature_extractor: str, trained: dict | None) -> None:
    """Each part in `run.measure` that the model has, into the run's report."""
    model, measure, dataset = run.model, run.measure, run.spec["dataset"]
    with run.measuring("test"):
        tested = _test_metrics(run)
        if trained and model.get_config().get("dp_noise") and "test" in measure:
            _privacy_budget(run, trained)
    if tested and model.can(base.SAMPLES) and measure - {"test"}:
        generated = None
        if "samples" in measure:
            with run.measuring("samples"):
                generated = _generated(run)
        extractor = _extractor(feature_extractor, dataset)
        if extractor is not None:
            _feature_metrics(run, extractor, generated)
    if tested and model.can(base.TRANSLATION) and "samples" in measure:
        # A paired dataset's images are those of the dataset it is made from.
        source = data.REGISTRY[dataset].made_from or dataset
        with run.measuring("samples"):
            _translation_metrics(run, _extractor(feature_extractor, source), source)


def _parts_of(model) -> set[str]:
    """The evaluation parts `model` has: refused up front, before any work."""
    parts = {"test"}
    if model.can(base.SAMPLES) or model.can(base.TRANSLATION):
        parts.add("samples")
    if model.can(base.SAMPLES) and _samples_in_steps(model):
        parts.add("steps")
    if model.can(base.CONDITIONS):
        parts.add("conditions")
    return parts


def _test_metrics(run: _Run) -> bool:
    """The model's own test metrics and likelihood (if measured); False when there
    is no test split."""
    try:
        test_images = run.splits.images("test")
    except data.DataSourceError as error:
        print(f"no test split, so no test metrics: {error}", file=sys.stderr)
        return False
    if "test" not in run.measure:
        return True
    labels = run.splits.labels("test") if run.spec.get("labels") else None
    binarize, batch_size = run.spec.get("binarize", False), 256
    test_data = _in_order(
        test_images, labels, binarize, batch_size, data.input_kind(run.spec["dataset"])
    )
    batches = -(-len(test_images) // batch_size)
    with progress.bar("test metrics", batches, "batches") as advance:
        logs = run.model.evaluate(
            test_data,
            return_dict=True,
            verbose=0,
            callbacks=progress.on_batches(advance),
        )
    for name, value in logs.items():
        run.add(f"test {name}", value)
    if run.model.can(base.LIKELIHOOD):
        first = None if labels is None else labels[:NLL_IMAGES]
        test_nats = _likelihood(
            run.model, test_images[:NLL_IMAGES], first, binarize, run.add
        )
        if len(test_nats):
            _membership_inference(run, test_nats, binarize)
    return True


def _membership_inference(run: _Run, test_nats, binarize) -> None:
    """How well a likelihood threshold tells training images from test images.

    The attack of Yeom et al. (2018) on a likelihood model: call an image a
    training member when its NLL is low. AUC 0.5 means no membership leaks.
    """
    count = len(test_nats)
    train = run.splits.images("train")[:count]
    labels = run.splits.labels("train")[:count] if run.spec.get("labels") else None
    train_nats = _nats(run.model, train, labels, binarize)
    run.add(
        f"membership inference AUC (NLL threshold, {count} train vs {count} test images)",
        metrics.roc_auc(-np.asarray(test_nats), -train_nats),
    )


def _privacy_budget(run: _Run, trained: dict) -> None:
    """Epsilon of a DP-SGD model, from its training record and dataset size."""
    config = run.model.get_config()
    dataset_size = len(run.splits.images("train"))
    budget = privacy.epsilon(
        config["dp_noise"], trained["batch_size"], dataset_size, trained["steps"]
    )
    run.add(
        f"privacy budget epsilon (delta = {privacy.DELTA:g}, RDP accountant, "
        f"{trained['steps']} steps of {trained['batch_size']} of {dataset_size} "
        f"images, noise {config['dp_noise']:g}, clip {config['dp_clip']:g})",
        budget,
    )


def _in_order(images, labels, binarize, batch_size, pairs=None):
    """Test batches in order; binarized test images are drawn once, fixed per image;
    a paired dataset's are (inputs, targets)."""
    return data.pipeline(
        images,
        batch_size=batch_size,
        shuffle=False,
        binarize="fixed" if binarize else None,
        labels=labels,
        pairs=pairs,
    )


def _generated(run: _Run) -> np.ndarray:
    """Time 64 samples, then draw `num_samples` and measure their pixel diversity
    and sharpness against as many test images."""
    model, seed = run.model, run.seed
    with progress.showing(False):  # the time of sampling, not of drawing a bar
        model.generate(TIMED_SAMPLES, seed=seed)  # warm-up: tracing is not sampling
        start = time.perf_counter()
        model.generate(TIMED_SAMPLES, seed=seed)
        seconds = time.perf_counter() - start
    run.add(f"seconds to generate {TIMED_SAMPLES} samples ({hardware()})", seconds)
    test_images = run.splits.images("test")
    count = min(run.num_samples, len(test_images))
    generated = np.asarray(model.generate(run.num_samples, seed=seed))
    real_test = test_images[run.rng.permutation(len(test_images))[:count]] / 255.0
    run.add(
        f"{DIVERSITY} ({count} each)",
        mean_pairwise_distance(generated[:count]) / mean_pairwise_distance(real_test),
    )
    run.add(
        f"{SHARPNESS} ({count} each)",
        metrics.sharpness(generated[:count]) / metrics.sharpness(real_test),
    )
    return generated


def _extractor(name: str, dataset: str):
    """The feature extractor, or None for "none" and for "auto" without one."""
    if name == "none":
        return None
    try:
        return features.extractor(name, dataset)
    except ValueError as error:
        if name != "auto":
            raise
        print(f"no feature metrics: {error}", file=sys.stderr)
        return None


def _feature_metrics(run: _Run, extractor, generated: np.ndarray | None) -> None:
    """FID, KID, precision/recall, class metrics and memorisation of `generated`
    (None when samples are not measured), with their floors; then the steps and
    conditions parts."""
    report, dataset = run.report, run.spec["dataset"]
    report["extractor"] = {"name": extractor.name, "sha256": extractor.sha256}
    report["num_samples"] = run.num_samples
    features_of = {
        split: features.reference_features(
            extractor, dataset, split, run.splits.images(split)
        )
        for split in (run.reference, run.other)
    }
    report["reference_count"] = len(run.splits.images(run.reference))
    reference_features = features_of[run.reference]
    reference_labels = run.splits.labels(run.reference)
    default_features = None
    if generated is not None:
        default_features = extractor.features(generated)
        with run.measuring("samples"):
            _sample_and_floor_metrics(
                run, extractor, generated, default_features, features_of
            )
    if _samples_in_steps(run.model) and "steps" in run.measure:
        with run.measuring("steps"):
            _steps_tradeoff(run, extractor, reference_features, default_features)
    if run.model.can(base.CONDITIONS) and "conditions" in run.measure:
        with run.measuring("conditions"):
            _conditional(run, extractor, reference_features, reference_labels)


def _sample_and_floor_metrics(
    run, extractor, generated, generated_features, features_of
):
    """The sample metrics of generated images and of real images of the other split
    (the floor), and memorisation."""
    other_images = run.splits.images(run.other)
    chosen = run.rng.permutation(len(other_images))[: run.num_samples]
    compared = {
        "": (generated, generated_features),
        f"floor (real {run.other} vs {run.reference}): ": (
            other_images[chosen] / 255.0,
            features_of[run.other][chosen],
        ),
    }
    for prefix, (images, image_features) in compared.items():
        for name, value in _sample_metrics(
            extractor,
            images,
            image_features,
            features_of[run.reference],
            run.splits.labels(run.reference),
            run.rng,
        ).items():
            run.add(prefix + name, value, samples=len(images))
    _memorisation(run, extractor, compared[""], features_of)


def _samples_in_steps(model) -> bool:
    return "steps" in inspect.signature(model.generate).parameters


def _steps_tradeoff(run: _Run, extractor, reference_features, default_features):
    """FID and the time of 64 samples at each number of sampling steps: what fewer
    steps cost in quality and save in time. `default_features` are those of the
    samples already drawn at the model's default steps, if they were."""
    reference = metrics.FeatureStatistics().update(reference_features)
    with progress.showing(False):  # one graph serves every step count: warm it once
        run.model.generate(TIMED_SAMPLES, seed=run.seed, steps=1)
    for steps in (s for s in SAMPLING_STEPS if s <= run.model.timesteps):
        with progress.showing(False):
            start = time.perf_counter()
            run.model.generate(TIMED_SAMPLES, seed=run.seed, steps=steps)
            seconds = time.perf_counter() - start
        run.add(
            f"seconds to generate {TIMED_SAMPLES} samples, {steps} sampling steps "
            f"({hardware()})",
            seconds,
        )
        if steps == run.model.sampling_steps and default_features is not None:
            features_ = default_features
        else:
            images = run.model.generate(run.num_samples, seed=run.seed, steps=steps)
            features_ = extractor.features(np.asarray(images))
        found = metrics.FeatureStatistics().update(features_)
        run.add(
            f"FID ({extractor.name}), {steps} sampling steps",
            metrics.fid(reference, found),
            samples=run.num_samples,
        )


def _memorisation(run: _Run, extractor, generated, features_of) -> None:
    """Nearest training image over nearest held-out image, in pixels and in features.

    A larger set has nearer neighbours, so the ratio sits below 1 even without
    copying; its floor is the same ratio for real test images that no model saw,
    measured the same way.
    """
    train_images, test_images = run.splits.images("train"), run.splits.images("test")
    train_features, test_features = features_of["train"], features_of["test"]
    train_subset = run.rng.permutation(len(train_images))[:MEMORISATION_TRAIN_IMAGES]
    queries, held_out = np.array_split(run.rng.permutation(len(test_images)), 2)
    samples, sample_features = generated
    spaces = {
        "pixels": (
            samples,
            test_images[queries] / 255.0,
            train_images[train_subset] / 255.0,
            test_images[held_out] / 255.0,
        ),
        f"features ({extractor.name})": (
            sample_features,
            test_features[queries],
            train_features[train_subset],
            test_features[held_out],
        ),
    }
    for space, (found, real, train_set, held_set) in spaces.items():
        name = f"memorisation ratio, {space} (nearest train / nearest held-out test)"
        run.add(name, metrics.memorisation_ratio(found, train_set, held_set))
        run.add(
            f"floor (real test vs train): {name}",
            metrics.memorisation_ratio(real, train_set, held_set),
        )


def _with_command(report):
    report["metrics"] = [
        {**metric, "command": report["command"]} for metric in report["metrics"]
    ]
    return report


def _likelihood(model, images, labels, binarize, add) -> np.ndarray:
    """Negative log-likelihood in nats and bits/dim, as the model bounds it; the nats.

    `model.likelihood_bound` names how: "exact" (PixelCNN), the IWAE bound with
    its number of importance samples (VAEs), annealed importance sampling (RBMs),
    or a continuous density (Gaussian mixtures: no bits/dim then).
    """
    if len(images) == 0:
        return np.zeros(0)
    nats = _nats(model, images, labels, binarize)
    label = f"{model.likelihood_bound}, {len(images)} test images"
    add(f"test negative log-likelihood, nats ({label})", nats.mean())
    if "continuous" not in model.likelihood_bound:
        # A density of [0, 1] pixels has no bits/dim to compare with discrete models'.
        add(
            f"test bits/dim ({label})",
            metrics.bits_per_dim(nats, int(np.prod(images.shape[1:]))),
        )
    return nats


def _nats(model, images, labels, binarize) -> np.ndarray:
    """Each image's negative log-likelihood in nats, binarized as at test time."""
    batches = _in_order(images, labels, binarize, batch_size=100)
    heads = list(model.conditions) if model.can(base.CONDITIONS) else []

    def nats_of(batch):
        if not isinstance(batch, tuple):
            return model.negative_log_likelihood(batch)
        conditions = {head: batch[1][:, i] for i, head in enumerate(heads)}
        return model.negative_log_likelihood(batch[0], **conditions)

    nats = []
    with progress.bar("likelihood", -(-len(images) // 100), "batches") as advance:
        for batch in batches:
            nats.append(np.asarray(nats_of(batch)))
            advance()
    return np.concatenate(nats)


def _sample_metrics(
    extractor, images, image_features, reference_features, reference_labels, rng
):
    """FID, KID, precision/recall and class metrics of one image set against the reference."""
    tag = extractor.name
    count = len(images)
    reference_subset = reference_features[
        rng.permutation(len(reference_features))[:count]
    ]
    statistics = metrics.FeatureStatistics().update(image_features)
    found = {
        f"FID ({tag})": metrics.fid(
            metrics.FeatureStatistics().update(reference_features), statistics
        )
    }
    # Subsets of half the samples, so the 100 estimates differ and their spread means
    # something (subsets of all the samples would all be the same set).
    kid_mean, kid_std = metrics.kid(
        reference_subset, image_features, subset_size=min(1000, max(2, count // 2))
    )
    found[f"KID ({tag}) mean"] = kid_mean
    found[f"KID ({tag}) std over subsets"] = kid_std
    precision, recall = metrics.precision_recall(reference_subset, image_features)
    found[f"precision ({tag}, k=3)"] = precision
    found[f"recall ({tag}, k=3)"] = recall
    probabilities = extractor.probabilities(images)
    for i, (head, head_probabilities) in enumerate(probabilities.items()):
        found[f"inception-style score ({tag} {head})"] = metrics.inception_score(
            head_probabilities
        )[0]
        if reference_labels is not None and i < reference_labels.shape[1]:
            classes = len(extractor.class_names[head])
            coverage = metrics.mode_coverage(
                head_probabilities.argmax(axis=1),
                np.bincount(reference_labels[:, i], minlength=classes),
            )
            found[f"{head} classes covered of {classes} ({tag})"] = coverage["covered"]
            found[f"{head} KL(generated || data classes), nats ({tag})"] = coverage[
                "kl"
            ]
    return found


def _conditional(run: _Run, extractor, reference_features, reference_labels):
    """Per requested class: how often the classifier agrees, and that class's FID."""
    heads = {tuple(names): head for head, names in extractor.class_names.items()}
    data_heads = list(data.CLASSES.get(run.spec["dataset"], {}))
    for condition, names in run.model.conditions.items():
        classifier_head = heads.get(tuple(names))
        if classifier_head is None:
            print(
                f"{extractor.name} has no head with the classes of {condition}; "
                "skipping its agreement check",
                file=sys.stderr,
            )
            continue
        column = data_heads.index(classifier_head)
        _real_agreement(run, extractor, condition, classifier_head, column)
        agreements = []
        for index, name in enumerate(names):
            images = np.asarray(
                run.model.generate(
                    run.class_samples, seed=run.seed, **{condition: index}
                )
            )
            predicted = extractor.probabilities(images)[classifier_head].argmax(axis=1)
            agreements.append(float((predicted == index).mean()))
            run.add(
                f"classifier agrees with requested {condition}={name} ({extractor.name})",
                agreements[-1],
                samples=run.class_samples,
            )
            if reference_labels is not None:
                real = reference_features[reference_labels[:, column] == index]
                _class_fid(run, extractor, f"{condition}={name}", real, images)
        run.add(
            f"classifier agrees with requested {condition}, mean over classes "
            f"({extractor.name})",
            np.mean(agreements),
        )


def _class_fid(run: _Run, extractor, request: str, real_features, images) -> None:
    """The FID of the samples asked for by `request` ("head=class") against the real
    images of that class, where there are at least two (a covariance needs them)."""
    if len(real_features) < 2:
        print(
            f"no FID for {request}: the {run.reference} split has "
            f"{len(real_features)} images of it",
            file=sys.stderr,
        )
        return
    name = request.split("=", 1)[1]
    run.add(
        f"FID {request} vs real {name} ({extractor.name})",
        metrics.fid(
            metrics.FeatureStatistics().update(real_features),
            metrics.FeatureStatistics().update(extractor.features(images)),
        ),
        samples=len(images),
    )


def _real_agreement(run: _Run, extractor, condition, classifier_head, column):
    """Per class, how often the classifier names real held-out images rightly: the
    ceiling of its agreement with a conditional model's samples of that class."""
    images, labels = run.splits.images(run.other), run.splits.labels(run.other)
    if labels is None or not len(images):
        return
    predicted = _predicted_classes(extractor, classifier_head, images)
    for index, name in enumerate(extractor.class_names[classifier_head]):
        real = labels[:, column] == index
        if not real.any():  # the split has none of this class
            continue
        run.add(
            f"floor (real {run.other}): classifier agrees with true {condition}={name} "
            f"({extractor.name})",
            np.mean(predicted[real] == index),
            samples=int(real.sum()),
        )


def _predicted_classes(extractor, head: str, images) -> np.ndarray:
    """The classifier's class of each uint8 image, a chunk at a time: a whole train
    split in float32 would take gigabytes."""
    chunks = np.split(images, range(REAL_CHUNK, len(images), REAL_CHUNK))
    return np.concatenate(
        [
            extractor.probabilities(chunk.astype("float32") / 255.0)[head].argmax(1)
            for chunk in chunks
        ]
    )


# --- Image-to-image models: every test input translated, against its own target ---

FIGURE = "translations.png"
FIGURE_EXAMPLES = 8
FIGURE_SEED = 0
# How a figure's caption names each kind of input.
INPUT_NAMES = {
    "edges": "a line sketch",
    "grayscale": "the grayscale photo",
    "downsample4": "the 16x16 photo, its pixels enlarged",
}


def _bicubic(inputs, image_shape):
    return tf.clip_by_value(tf.image.resize(inputs, image_shape[:2], "bicubic"), 0, 1)


def _as_rgb(inputs, image_shape):
    return tf.repeat(inputs, image_shape[-1], axis=-1)


# What a translation is measured against, by the kind of its inputs: the obvious
# answer without a model. A sketch has none.
BASELINES = {
    "downsample4": ("bicubic upsampling", _bicubic),
    "grayscale": ("the grayscale input as RGB", _as_rgb),
}


def _translation_metrics(run: _Run, extractor, source: str) -> None:
    """PSNR, SSIM, colourfulness and FID of the translations of every test input; the
    same for the baseline's outputs; colourfulness and FID of the real targets.

    FID compares each set with the reference split, so the real test targets' FID
    is the floor: what a perfect translation scores.
    """
    kind = data.input_kind(run.spec["dataset"])
    targets = run.splits.images("test").astype(np.float32) / 255.0
    inputs = np.asarray(data.paired(kind, targets))
    _time_translation(run, inputs)
    outputs = {"": _translated(run.model, inputs)}
    if kind in BASELINES:
        name, baseline = BASELINES[kind]
        images = baseline(inputs, run.model.image_shape)
        outputs[f"baseline ({name}): "] = np.asarray(images)
    psnr = _pixel_metrics(run, outputs, targets)
    if kind in BASELINES:
        gain = psnr[""] - psnr[f"baseline ({name}): "]
        run.add(f"PSNR gain over the baseline ({name}), dB", gain)
    outputs["real test images: "] = targets
    for prefix, images in outputs.items():
        colourfulness = metrics.colourfulness(images).mean()
        run.add(
            f"{prefix}colourfulness (Hasler and Süsstrunk 2003, mean)", colourfulness
        )
    if extractor is not None:
        _translation_features(run, extractor, source, outputs)


def _pixel_metrics(run: _Run, outputs: dict, targets) -> dict:
    """Mean PSNR and SSIM of each set of outputs against the targets; the PSNRs."""
    count = f"mean over {len(targets)} test images"
    psnr = {}
    for prefix, images in outputs.items():
        psnr[prefix] = metrics.psnr(images, targets).mean()
        run.add(f"{prefix}PSNR, dB ({count})", psnr[prefix])
        run.add(f"{prefix}SSIM ({count})", metrics.ssim(images, targets).mean())
    return psnr


def _translated(model, inputs, chunk: int = 1024) -> np.ndarray:
    """`model.translate(inputs)` with progress: chunks that are a multiple of its
    batches of 256, so the outputs are those of one call."""
    outputs = []
    with progress.bar("translating", len(inputs), "images") as advance:
        for start in range(0, len(inputs), chunk):
            outputs.append(np.asarray(model.translate(inputs[start : start + chunk])))
            advance(len(outputs[-1]))
    return np.concatenate(outputs) if outputs else np.asarray(model.translate(inputs))


def _time_translation(run: _Run, inputs) -> None:
    batch = inputs[:TIMED_SAMPLES]
    run.model.translate(batch)  # warm-up: tracing is not translating
    start = time.perf_counter()
    run.model.translate(batch)
    run.add(
        f"seconds to translate {len(batch)} inputs ({hardware()})",
        time.perf_counter() - start,
    )


def _translation_features(run: _Run, extractor, source: str, outputs: dict) -> None:
    """FID and the other feature metrics of each set of outputs against the reference."""
    report = run.report
    report["extractor"] = {"name": extractor.name, "sha256": extractor.sha256}
    reference_images = run.splits.images(run.reference)
    report["num_samples"] = len(outputs[""])
    report["reference_count"] = len(reference_images)
    reference_features = features.reference_features(
        extractor, source, run.reference, reference_images
    )
    test_features = features.reference_features(
        extractor, source, "test", run.splits.images("test")
    )
    reference_labels = run.splits.labels(run.reference)
    for prefix, images in outputs.items():
        if prefix == "real test images: ":
            prefix, found = f"floor (real test vs {run.reference}): ", test_features
        else:
            found = extractor.features(images)
        for name, value in _sample_metrics(
            extractor, images, found, reference_features, reference_labels, run.rng
        ).items():
            run.add(prefix + name, value, samples=len(images))


def translation_examples(
    model, targets: np.ndarray, kind: str, count: int, seed: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, outputs, targets) of `count` targets (uint8) chosen by `seed`.

    The examples `keras-gen sample` shows of a translation preset, in the order of
    the split; seed None chooses afresh, and any int64 seed works.
    """
    rng = np.random.default_rng(None if seed is None else seed % 2**64)
    chosen = np.sort(rng.choice(len(targets), min(count, len(targets)), replace=False))
    real = targets[chosen].astype(np.float32) / 255.0
    inputs = np.asarray(data.paired(kind, real))
    return inputs, np.asarray(model.translate(inputs)), real


def translation_figure(model, targets: np.ndarray, kind: str, seed: int = FIGURE_SEED):
    """(images, columns) of the card's figure: input / output / target rows."""
    rows = translation_examples(model, targets, kind, FIGURE_EXAMPLES, seed)
    return images_module.side_by_side(*rows)


def figure_entry(preset: str, kind: str, data_source=None) -> dict:
    """The card's entry for `translation_figure`, with the command that redraws it."""
    command = ["keras-gen", "sample", preset, "-n", str(FIGURE_EXAMPLES)]
    command += ["--seed", str(FIGURE_SEED), "-o", FIGURE]
    if data_source is not None:
        command += ["--data", str(data_source)]
    return {
        "file": FIGURE,
        "caption": (
            f"Rows: the input ({INPUT_NAMES.get(kind, kind)}), the model's output, "
            "the real target, for "
            f"{FIGURE_EXAMPLES} test images chosen by seed {FIGURE_SEED}."
        ),
        "command": shlex.join(command),
    }


# --- A conditional model's samples, a row per class --------------------------------

PER_CLASS_EXAMPLES = 8
SIMPLE_NAME = re.compile(r"\w+")  # a head's name that may go into a file name


def per_class_figures(model, preset: str) -> tuple[list[dict], dict]:
    """A figure per head of a conditional model, a row of samples per class, with the
    `keras-gen sample --per-class` command that redraws it: (card entries,
    {file: (images, columns)}). Nothing for other models."""
    if not (model.can(base.CONDITIONS) and model.can(base.SAMPLES)):
        return [], {}
    entries, figures = [], {}
    for index, (head, names) in enumerate(model.conditions.items()):
        file = f"per_class_{head if SIMPLE_NAME.fullmatch(head) else index}.png"
        conditions, count = conditioning.per_class(
            model.conditions, head, PER_CLASS_EXAMPLES, {}
        )
        figures[file] = (
            model.generate(count, seed=FIGURE_SEED, **conditions),
            PER_CLASS_EXAMPLES,
        )
        others = "; the other heads cycle through their classes" * (
            len(model.conditions) > 1
        )
        command = ["keras-gen", "sample", preset, "--per-class", head]
        command += ["-n", str(PER_CLASS_EXAMPLES), "--seed", str(FIGURE_SEED)]
        entries.append(
            {
                "file": file,
                "caption": f"A row per class of {head} ({', '.join(names)}), "
                f"{PER_CLASS_EXAMPLES} samples each, seed {FIGURE_SEED}{others}.",
                "command": shlex.join([*command, "-o", file]),
            }
        )
    return entries, figures


def mean_pairwise_distance(images) -> float:
    """Mean Euclidean distance between all pairs of distinct images, in float64."""
    flat = np.asarray(images, np.float64).reshape(len(images), -1)
    squares = np.sum(flat**2, axis=1)
    distances = np.sqrt(
        np.maximum(squares[:, None] + squares[None, :] - 2 * flat @ flat.T, 0.0)
    )
    count = len(flat)
    return float(distances.sum() / (count * (count - 1)))


def hardware() -> str:
    """This machine, as cards name it: cores, CPU model and architecture, the CPU
    kernels TensorFlow runs, GPUs. Wall times compare only between equal strings:
    oneDNN's kernels trained dcgan_faces 2.7 times as fast as Eigen's on one CPU
    (README, "Fast on CPUs")."""
    gpus = tf.config.list_physical_devices("GPU")
    accelerators = f"{len(gpus)} GPU" if gpus else "no GPU"
    kernels = f"{cpu_kernels()} kernels"
    cpu = ", ".join(filter(None, [cpu_model(), platform.machine(), kernels]))
    return f"{os.cpu_count()} CPU cores ({cpu}), {accelerators}"


CPUINFO = Path("/proc/cpuinfo")


def cpuinfo(*fields: str) -> list[str]:
    """The values of Linux's /proc/cpuinfo lines named `fields`, a line per core
    (x86 names its flags "flags", Arm "Features"); [] where there is no such file."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return []
    lines = rf"^(?:{'|'.join(map(re.escape, fields))})\s*:(.*)$"
    return [value.strip() for value in re.findall(lines, text, re.MULTILINE)]


def cpu_model() -> str:
    """The CPU's name, e.g. "Intel(R) Xeon(R) Processor"; "" where cpuinfo names none
    (Arm's, other systems: platform.processor() gives only the architecture there)."""
    models = cpuinfo("model name")
    return models[0] if models else ""


def cpu_kernels() -> str:
    """The CPU kernels TensorFlow runs in this process, "oneDNN" or "Eigen", which
    TF_ENABLE_ONEDNN_OPTS (and, unset, the CPU's instructions) decides at import.
    TensorFlow has no public query for it."""
    from tensorflow.python.util import _pywrap_util_port

    return "oneDNN" if _pywrap_util_port.IsMklEnabled() else "Eigen"
