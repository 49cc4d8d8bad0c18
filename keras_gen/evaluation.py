"""Numbers for a preset's card, each measured on the held-out split by a named command."""

import os
import sys

import keras
import numpy as np

from keras_gen import data

DIVERSITY = "pixel diversity, generated / test"


def evaluate(
    model: keras.Model,
    data_spec: dict,
    command: str,
    *,
    num_samples: int = 1000,
    seed: int = 0,
    data_source: str | os.PathLike | None = None,
) -> list[dict]:
    """The model's own test metrics and its sample diversity, as card metric entries.

    Diversity is the mean pairwise pixel distance of `num_samples` generated images
    over that of as many test images: near 1 for a model as varied as the data, near
    0 for one collapsed to a few modes.
    """
    try:
        test_images = data.load_images(data_spec["dataset"], "test", source=data_source)
    except data.DataSourceError as error:
        print(f"no test split, so no test metrics: {error}", file=sys.stderr)
        return []
    binarize = data_spec.get("binarize", False)
    test_data = data.pipeline(
        test_images,
        batch_size=256,
        shuffle=False,
        binarize="fixed" if binarize else None,
        labels=data.load_labels(data_spec["dataset"], "test", source=data_source)
        if data_spec.get("labels")
        else None,
    )
    scores = model.evaluate(test_data, return_dict=True, verbose=0)
    metrics = [
        {"name": f"test {name}", "value": float(value)}
        for name, value in scores.items()
    ]
    if not hasattr(model, "generate"):
        return [{**metric, "command": command} for metric in metrics]
    count = min(num_samples, len(test_images))
    real = np.random.default_rng(seed).permutation(len(test_images))[:count]
    generated = np.asarray(model.generate(count, seed=seed))
    diversity = mean_pairwise_distance(generated) / mean_pairwise_distance(
        test_images[real] / 255.0
    )
    metrics.append({"name": f"{DIVERSITY} ({count} each)", "value": float(diversity)})
    return [{**metric, "command": command} for metric in metrics]


def mean_pairwise_distance(images) -> float:
    """Mean Euclidean distance between all pairs of distinct images, in float64."""
    flat = np.asarray(images, np.float64).reshape(len(images), -1)
    squares = np.sum(flat**2, axis=1)
    distances = np.sqrt(
        np.maximum(squares[:, None] + squares[None, :] - 2 * flat @ flat.T, 0.0)
    )
    count = len(flat)
    return float(distances.sum() / (count * (count - 1)))
