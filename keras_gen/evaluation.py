"""Numbers for a preset's card, each measured on held-out data by a named command.

`evaluate` measures one model against one dataset split and returns a report: every
metric with its value, the feature extractor (name and sha256), sample counts, the
seed and the command. Sample metrics come with their floor: the same metrics for
real images of the other split in place of generated ones, i.e. what a perfect
model would score with this many samples.
"""

import os
import platform
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from keras_gen import data, features, metrics

DIVERSITY = "pixel diversity, generated / test"
LIKELIHOOD_SAMPLES = 100  # importance samples K for a VAE's negative log-likelihood
NLL_IMAGES = 2000  # test images the importance-weighted NLL is averaged over
MEMORISATION_TRAIN_IMAGES = 10000  # training images searched for nearest neighbours
TIMED_SAMPLES = 64


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
) -> dict:
    """Measure `model` on its dataset; a report whose "metrics" go into the card.

    Args:
        model: any keras_gen model; generative models also get sample metrics.
        data_spec: the card's data block (dataset, binarize, labels).
        command: the command line that reproduces this measurement.
        num_samples: generated images (and per class, for conditional models).
        seed: fixes the generated images and every random subset.
        feature_extractor: "auto" (the dataset's classifier preset), "inception",
            or a classifier preset name; "none" skips feature metrics.
        reference: the real split generated images are compared with.
    """
    if reference not in data.SPLITS:
        raise ValueError(f"reference must be one of {data.SPLITS}, got {reference!r}")
    dataset = data_spec["dataset"]
    report = {
        "command": command,
        "dataset": dataset,
        "reference": reference,
        "seed": seed,
        "metrics": [],
    }
    found = report["metrics"]

    def add(name, value, **extra):
        found.append({"name": name, "value": float(value), **extra})

    try:
        test_images = data.load_images(dataset, "test", source=data_source)
    except data.DataSourceError as error:
        print(f"no test split, so no test metrics: {error}", file=sys.stderr)
        return _with_command(report)
    test_labels = _labels(dataset, "test", data_source)
    binarize = data_spec.get("binarize", False)
    test_data = data.pipeline(
        test_images,
        batch_size=256,
        shuffle=False,
        binarize="fixed" if binarize else None,
        labels=test_labels if data_spec.get("labels") else None,
    )
    for name, value in model.evaluate(test_data, return_dict=True, verbose=0).items():
        add(f"test {name}", value)
    _likelihood(
        model,
        test_images[:NLL_IMAGES],
        test_labels[:NLL_IMAGES] if data_spec.get("labels") else None,
        binarize,
        add,
    )
    if not hasattr(model, "generate"):
        return _with_command(report)

    model.generate(TIMED_SAMPLES, seed=seed)  # warm-up: tracing is not sampling
    start = time.perf_counter()
    model.generate(TIMED_SAMPLES, seed=seed)
    add(
        f"seconds to generate {TIMED_SAMPLES} samples ({hardware()})",
        time.perf_counter() - start,
    )
    count = min(num_samples, len(test_images))
    generated = np.asarray(model.generate(num_samples, seed=seed))
    rng = np.random.default_rng(seed)
    real_test = test_images[rng.permutation(len(test_images))[:count]] / 255.0
    add(
        f"{DIVERSITY} ({count} each)",
        mean_pairwise_distance(generated[:count]) / mean_pairwise_distance(real_test),
    )
    if feature_extractor == "none":
        return _with_command(report)
    try:
        extractor = features.extractor(feature_extractor, dataset)
    except ValueError as error:
        if feature_extractor != "auto":
            raise
        print(f"no feature metrics: {error}", file=sys.stderr)
        return _with_command(report)
    report["extractor"] = {"name": extractor.name, "sha256": extractor.sha256}
    report["num_samples"] = num_samples
    other = "test" if reference == "train" else "train"
    reference_images = data.load_images(dataset, reference, source=data_source)
    other_images = (
        test_images
        if other == "test"
        else data.load_images(dataset, other, source=data_source)
    )
    reference_labels = _labels(dataset, reference, data_source)
    reference_features = features.reference_features(
        extractor, dataset, reference, reference_images
    )
    other_features = features.reference_features(
        extractor, dataset, other, other_images
    )
    report["reference_count"] = len(reference_images)

    generated_features = extractor.features(generated)
    chosen = rng.permutation(len(other_images))[:num_samples]
    compared = {
        "": (generated, generated_features),
        f"floor (real {other} vs {reference}): ": (
            other_images[chosen] / 255.0,
            other_features[chosen],
        ),
    }
    for prefix, (images, image_features) in compared.items():
        for name, value in _sample_metrics(
            extractor, images, image_features, reference_features, reference_labels, rng
        ).items():
            add(prefix + name, value, samples=len(images))
    # Memorisation: nearest training image over nearest held-out image. A larger set
    # has nearer neighbours, so the ratio sits below 1 even without copying; its floor
    # is the same ratio for real test images that no model saw, measured the same way.
    by_split = {reference: (reference_images, reference_features)}
    by_split[other] = (other_images, other_features)
    (train_images, train_features), (test_images, test_features) = (
        by_split["train"],
        by_split["test"],
    )
    train_subset = rng.permutation(len(train_images))[:MEMORISATION_TRAIN_IMAGES]
    test_order = rng.permutation(len(test_images))
    queries, held_out = np.array_split(test_order, 2)
    spaces = {
        "pixels": (
            generated,
            test_images[queries] / 255.0,
            train_images[train_subset] / 255.0,
            test_images[held_out] / 255.0,
        ),
        f"features ({extractor.name})": (
            generated_features,
            test_features[queries],
            train_features[train_subset],
            test_features[held_out],
        ),
    }
    for space, (samples, real, train_set, held_set) in spaces.items():
        name = f"memorisation ratio, {space} (nearest train / nearest held-out test)"
        add(name, metrics.memorisation_ratio(samples, train_set, held_set))
        add(
            f"floor (real test vs train): {name}",
            metrics.memorisation_ratio(real, train_set, held_set),
        )
    if hasattr(model, "conditions"):
        _conditional(
            model,
            extractor,
            reference_images,
            reference_labels,
            reference_features,
            dataset,
            num_samples,
            seed,
            add,
        )
    return _with_command(report)


def _with_command(report):
    report["metrics"] = [
        {**metric, "command": report["command"]} for metric in report["metrics"]
    ]
    return report


def _labels(dataset, split, data_source):
    """The split's labels, or None where the source has none; bad labels are an error."""
    try:
        return data.load_labels(dataset, split, source=data_source)
    except data.DataSourceError:
        return None


def _likelihood(model, images, labels, binarize, add):
    """Negative log-likelihood in nats and bits/dim: the IWAE bound for VAEs, else exact."""
    exact = not hasattr(model, "negative_log_likelihood")
    if (exact and not hasattr(model, "log_prob")) or len(images) == 0:
        return
    batches = data.pipeline(
        images,
        batch_size=100,
        shuffle=False,
        binarize="fixed" if binarize else None,
        labels=labels,
    )

    def nats_of(batch):
        if exact:
            return -model.log_prob(batch)
        if isinstance(batch, tuple):  # a conditional model's (images, labels)
            return model.negative_log_likelihood(
                batch[0], LIKELIHOOD_SAMPLES, labels=batch[1]
            )
        return model.negative_log_likelihood(batch, LIKELIHOOD_SAMPLES)

    nats = np.concatenate([np.asarray(nats_of(batch)) for batch in batches])
    method = "exact" if exact else f"IWAE K={LIKELIHOOD_SAMPLES}"
    label = f"{method}, {len(images)} test images"
    add(f"test negative log-likelihood, nats ({label})", nats.mean())
    add(
        f"test bits/dim ({label})",
        metrics.bits_per_dim(nats, int(np.prod(images.shape[1:]))),
    )


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


def _conditional(
    model,
    extractor,
    reference_images,
    reference_labels,
    reference_features,
    dataset,
    num_samples,
    seed,
    add,
):
    """Per requested class: how often the classifier agrees, and that class's FID."""
    heads = {tuple(names): head for head, names in extractor.class_names.items()}
    data_heads = list(data.CLASSES.get(dataset, {}))
    for condition, names in model.conditions.items():
        classifier_head = heads.get(tuple(names))
        if classifier_head is None:
            print(
                f"{extractor.name} has no head with the classes of {condition}; "
                "skipping its agreement check",
                file=sys.stderr,
            )
            continue
        column = data_heads.index(classifier_head)
        agreements = []
        for index, name in enumerate(names):
            images = np.asarray(
                model.generate(num_samples, seed=seed, **{condition: index})
            )
            predicted = extractor.probabilities(images)[classifier_head].argmax(axis=1)
            agreement = float((predicted == index).mean())
            agreements.append(agreement)
            add(
                f"classifier agrees with requested {condition}={name} ({extractor.name})",
                agreement,
                samples=num_samples,
            )
            if reference_labels is not None:
                of_class = reference_labels[:, column] == index
                add(
                    f"FID {condition}={name} vs real {name} ({extractor.name})",
                    metrics.fid(
                        metrics.FeatureStatistics().update(
                            reference_features[of_class]
                        ),
                        metrics.FeatureStatistics().update(extractor.features(images)),
                    ),
                    samples=num_samples,
                )
        add(
            f"classifier agrees with requested {condition}, mean over classes "
            f"({extractor.name})",
            np.mean(agreements),
        )


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
    """This machine, as cards name it: cores, architecture, GPUs."""
    gpus = tf.config.list_physical_devices("GPU")
    accelerators = f"{len(gpus)} GPU" if gpus else "no GPU"
    return f"{os.cpu_count()} CPU cores ({platform.machine()}), {accelerators}"
