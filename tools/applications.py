"""Measure the applications of keras_gen.applications on the zoo's presets.

Each sub-command prints a markdown table and writes its numbers (with this
command line) as JSON; `figures` writes the README's application figures.

    python tools/applications.py anomaly --json docs/applications/anomaly.json
    python tools/applications.py anomaly-held-out --json docs/applications/held_out.json
    python tools/applications.py inpainting --json docs/applications/inpainting.json
    python tools/applications.py augmentation --json docs/applications/augmentation.json
    python tools/applications.py figures --output docs/applications
"""

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_gen import _files, data, images, metrics, models, zoo
from keras_gen.applications import anomaly, augmentation, inpainting, latent
from keras_gen.models import noise

LIKELIHOOD_PRESETS = ("vae_mnist", "pixelcnn_mnist")
HELD_OUT_DIGIT = 9  # the digit most like others (4, 7): the hard case
HELD_OUT_EPOCHS = 5
OLDEST_AGE_GROUP = 4  # "65+" in the faces' age labels


def binarized_test(dataset: str, count: int) -> np.ndarray:
    """The first `count` test images, binarized once with the fixed test seed."""
    pixels = data.load_images(dataset, "test")[:count]
    batches = data.pipeline(pixels, batch_size=1000, shuffle=False, binarize="fixed")
    return np.concatenate([np.asarray(batch) for batch in batches])


def measure_anomaly(count: int) -> list[dict]:
    """MNIST test digits (normal) against Fashion-MNIST test images (anomalous)."""
    normal = binarized_test("mnist", count)
    anomalous = binarized_test("fashion_mnist", count)
    dimensions = int(np.prod(normal.shape[1:]))
    complexity = [anomaly.png_bits(group) / dimensions for group in (normal, anomalous)]
    rows = []
    for preset in LIKELIHOOD_PRESETS:
        model = zoo.load(preset)
        raw = [anomaly.anomaly_scores(model, group) for group in (normal, anomalous)]
        corrected = [s - c for s, c in zip(raw, complexity)]  # as complexity_correction
        for name, scores in (("NLL", raw), ("NLL - PNG bits", corrected)):
            rows.append(
                {
                    "preset": preset,
                    "score": name,
                    "roc_auc": metrics.roc_auc(*scores),
                    "fpr_at_95_recall": metrics.false_positive_rate_at_recall(*scores),
                    "mean_bits_per_dim": [float(s.mean()) for s in scores],
                }
            )
    return rows


def measure_held_out_digit(count: int, digit: int = HELD_OUT_DIGIT) -> list[dict]:
    """A VAE trained on MNIST without `digit`: that digit's test images as anomalies.

    vae_mnist's recipe, HELD_OUT_EPOCHS epochs, on the 9 other digits' training images.
    """
    card = zoo.card("vae_mnist")
    keras.utils.set_random_seed(0)
    model = zoo.build(card)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    train = data.load_images("mnist", "train")
    train = train[data.load_labels("mnist", "train")[:, 0] != digit]
    batches = data.pipeline(train, batch_size=128, binarize="dynamic")
    model.fit(batches, epochs=HELD_OUT_EPOCHS, verbose=2)
    test = binarized_test("mnist", 10_000)
    is_held_out = data.load_labels("mnist", "test")[:, 0] == digit
    normal, anomalous = test[~is_held_out][:count], test[is_held_out][:count]
    scores = [anomaly.anomaly_scores(model, group) for group in (normal, anomalous)]
    return [
        {
            "model": f"vae_mnist recipe without digit {digit}, {HELD_OUT_EPOCHS} epochs",
            "normal": f"{len(normal)} test digits other than {digit}",
            "anomalous": f"{len(anomalous)} test {digit}s",
            "roc_auc": metrics.roc_auc(*scores),
            "fpr_at_95_recall": metrics.false_positive_rate_at_recall(*scores),
        }
    ]


def measure_inpainting(count: int) -> list[dict]:
    """MNIST test digits with the bottom half missing, filled by each method."""
    digits = binarized_test("mnist", count)
    labels = data.load_labels("mnist", "test")[:count, 0]
    missing = inpainting.bottom_half(digits.shape)
    train_mean = data.load_images("mnist", "train").mean(axis=0) / 255.0
    filled = {
        "full images (no pixel missing)": digits,
        "mean-value filling": inpainting.mean_filled(digits, missing, train_mean),
    }
    for preset in LIKELIHOOD_PRESETS:
        filled[preset] = np.asarray(
            inpainting.inpaint(zoo.load(preset), digits, missing, seed=0)
        )
    classifier = zoo.load("classifier_mnist")
    rows = []
    for method, completed in filled.items():
        predicted = np.argmax(classifier.probabilities(completed)["digit"], axis=1)
        psnr = inpainting.filled_psnr(completed, digits, missing)
        rows.append(
            {
                "method": method,
                "classifier_accuracy": float(np.mean(predicted == labels)),
                "filled_region_psnr_db": float(np.mean(psnr[np.isfinite(psnr)])),
            }
        )
    return rows


AUGMENTATION_PRESET = "cgan_fashion_mnist"
REAL_FRACTIONS = (0.01, 0.1)
# A small Classifier and a fixed number of optimizer steps for every run, with or
# without synthetic images: a difference in accuracy is the data's, not the budget's.
AUGMENTATION_NETWORK = {"filters": (8, 16), "feature_dim": 32}
AUGMENTATION_BATCH = 256
AUGMENTATION_LEARNING_RATE = 1e-3


def balanced_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of `per_class` images of every class, drawn without replacement."""
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [
            rng.choice(np.flatnonzero(labels[:, 0] == c), per_class, replace=False)
            for c in np.unique(labels[:, 0])
        ]
    )


class SmallClassifier:
    """One compiled small Classifier, restarted from fresh seeded weights per run.

    Every run would otherwise trace its own training and test graphs, which on a
    loaded 2-core machine cost more than 300 steps of training.
    """

    def __init__(self, image_shape: tuple):
        self.image_shape = image_shape
        self.model = self._fresh()
        self.model.compile(optimizer=keras.optimizers.Adam(AUGMENTATION_LEARNING_RATE))
        self.model.optimizer.build(self.model.trainable_variables)
        # Its step, moments and learning rate as built: each run starts from them.
        self.optimizer_start = [v.numpy() for v in self.model.optimizer.variables]

    def _fresh(self) -> models.Classifier:
        classes = data.class_names("fashion_mnist")
        return models.Classifier(self.image_shape, classes, **AUGMENTATION_NETWORK)

    def test_accuracy(self, images, labels, test, steps: int, seed: int) -> float:
        """Accuracy on `test` after `steps` steps on (images, labels) from seed's weights."""
        keras.utils.set_random_seed(seed)
        self.model.set_weights(self._fresh().get_weights())
        for variable, value in zip(
            self.model.optimizer.variables, self.optimizer_start
        ):
            variable.assign(value)
        batches = (
            tf.data.Dataset.from_tensor_slices((images, labels))
            .shuffle(len(images), seed=seed)
            .repeat()
            .batch(AUGMENTATION_BATCH)
        )
        self.model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
        found = self.model.evaluate(test, verbose=0, return_dict=True)
        return float(found["class_accuracy"])


def measure_augmentation(seeds: int, synthetic_count: int, steps: int) -> tuple:
    """Small classifiers on 1% and 10% of Fashion-MNIST train, with and without
    `synthetic_count` images of AUGMENTATION_PRESET; (rows, settings).

    Seed s draws the real subset, the synthetic images, the initial weights and the
    batch order; with and without synthetic images share all but the data, so the
    gain is also given paired by seed.
    """
    start = time.monotonic()
    images = data.load_images("fashion_mnist", "train")
    labels = data.load_labels("fashion_mnist", "train")
    test = tf.data.Dataset.from_tensor_slices(
        (
            data.load_images("fashion_mnist", "test").astype("float32") / 255.0,
            data.load_labels("fashion_mnist", "test"),
        )
    ).batch(1000)
    generator = zoo.load(AUGMENTATION_PRESET)
    (classes,) = generator.conditions.values()
    if classes != data.class_names("fashion_mnist")["class"]:
        raise ValueError(f"{AUGMENTATION_PRESET}'s classes are not Fashion-MNIST's")
    checker = zoo.load("classifier_fashion_mnist")
    classifier = SmallClassifier(images.shape[1:])
    accuracy = {}
    for seed in range(seeds):
        synthetic = synthetic_arrays(generator, synthetic_count, seed)
        if seed == 0:
            agreement = label_agreement(checker, *synthetic)
        for fraction in REAL_FRACTIONS:
            per_class = round(fraction * len(images) / len(classes))
            chosen = balanced_subset(labels, per_class, seed)
            real = images[chosen].astype("float32") / 255.0, labels[chosen]
            mixed = [np.concatenate(pair) for pair in zip(real, synthetic)]
            for key, (x, y) in ((0, real), (synthetic_count, mixed)):
                found = classifier.test_accuracy(x, y, test, steps, seed)
                accuracy.setdefault((len(chosen), key), []).append(found)
        print(f"seed {seed} done, {time.monotonic() - start:.0f} s", flush=True)
    rows = [_accuracy_row(accuracy, key, synthetic_count) for key in accuracy]
    settings = {
        "seeds": seeds,
        "steps": steps,
        "batch_size": AUGMENTATION_BATCH,
        "classifier": AUGMENTATION_NETWORK,
        "synthetic_label_agreement (classifier_fashion_mnist, seed 0)": agreement,
        "wall_time_s": round(time.monotonic() - start, 1),
    }
    print(json.dumps(settings))
    return rows, settings


def synthetic_arrays(generator, count: int, seed: int) -> tuple:
    """(images, labels) of `augmentation.augment`, read into memory."""
    batches = list(augmentation.augment(generator, count, seed=seed).batch(1000))
    return tuple(np.concatenate([np.asarray(b[i]) for b in batches]) for i in (0, 1))


def label_agreement(classifier, synthetic_images, synthetic_labels) -> float:
    """How often a classifier names the class a synthetic image was drawn as."""
    predicted = np.argmax(classifier.probabilities(synthetic_images)["class"], axis=1)
    return float(np.mean(predicted == synthetic_labels[:, 0]))


def _accuracy_row(accuracy: dict, key: tuple, synthetic_count: int) -> dict:
    real_count, added = key
    found = np.array(accuracy[key])
    gain = found - np.array(accuracy[(real_count, 0)])
    return {
        "real_images": real_count,
        "synthetic_images": added,
        "test_accuracy_mean": float(found.mean()),
        "test_accuracy_std": _sample_std(found),
        "gain_paired_mean": float(gain.mean()),
        "gain_paired_std": _sample_std(gain),
        "seeds": len(found),
    }


def _sample_std(values: np.ndarray) -> float:
    """The standard deviation over seeds (n - 1 in the denominator); NaN for one."""
    return float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def write_figures(output: Path) -> None:
    """Interpolations and an older-face direction of dcgan_faces; cvae_faces' ages."""
    output.mkdir(parents=True, exist_ok=True)
    faces = zoo.load("dcgan_faces")
    pairs = ((1, 2), (3, 4), (5, 6))
    strips = [latent.interpolate(faces, a, b, steps=8) for a, b in pairs]
    images.write_png(output / "interpolation.png", np.concatenate(strips), columns=8)
    test = (data.load_images("faces", "test") / 255.0).astype("float32")
    labels = data.load_labels("faces", "test")
    # Every 65+ test face and as many others, drawn across the test split (its
    # faces come sorted by name, which starts with the age).
    oldest = np.flatnonzero(labels[:, 0] == OLDEST_AGE_GROUP)
    others = np.flatnonzero(labels[:, 0] != OLDEST_AGE_GROUP)
    chosen = np.r_[oldest, np.random.default_rng(0).choice(others, len(oldest), False)]
    _older_faces(faces, test[chosen], labels[chosen, 0], output)
    _ages(zoo.load("cvae_faces"), test[:6], labels[:6], output)


def _older_faces(faces, test, ages, output: Path) -> None:
    """Seeds' faces moved along the 65+ direction of latents recovered from test faces."""
    older = latent.attribute_direction(faces, test, ages, OLDEST_AGE_GROUP)
    rows = []
    for seed in range(6):
        start = noise.standard_normal(1, faces.latent_dim, seed)
        steps = tf.linspace(0.0, 2.0, 6)[:, None]
        rows.append(faces.decode(start + steps * older[None]))
    images.write_png(output / "older.png", np.concatenate(rows), columns=6)


def _ages(cvae, test, labels, output: Path) -> None:
    """Each test face, then its latent decoded with every age group."""
    ages = len(cvae.conditions["age"])
    rows = []
    for face, (age, gender) in zip(test, labels):
        latents = cvae.encode(face[None], age=int(age), gender=int(gender)).mean()
        repeated = np.repeat(np.asarray(latents), ages, axis=0)
        decoded = cvae.decode(repeated, age=list(range(ages)), gender=int(gender))
        rows.append(np.concatenate([face[None], np.asarray(decoded)]))
    images.write_png(output / "ages.png", np.concatenate(rows), columns=ages + 1)


def table(rows: list[dict]) -> str:
    """A markdown table of rows of equal keys, floats to 4 significant digits."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    for row in rows:
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "application",
        choices=(
            "anomaly",
            "anomaly-held-out",
            "inpainting",
            "augmentation",
            "figures",
        ),
    )
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=10, help="augmentation")
    parser.add_argument("--synthetic", type=int, default=6000, help="augmentation")
    parser.add_argument("--steps", type=int, default=300, help="augmentation")
    parser.add_argument("--json", help="write the numbers and this command here")
    parser.add_argument("--output", default="docs/applications")
    args = parser.parse_args(argv)
    if args.application == "figures":
        write_figures(Path(args.output))
        return 0
    measure = {
        "anomaly": measure_anomaly,
        "anomaly-held-out": measure_held_out_digit,
        "inpainting": measure_inpainting,
    }
    if args.application == "augmentation":
        rows, settings = measure_augmentation(args.seeds, args.synthetic, args.steps)
    else:
        rows = measure[args.application](args.num_images)
        settings = {"num_images": args.num_images}
    print(table(rows))
    if args.json:
        command = shlex.join(["python", "tools/applications.py", *sys.argv[1:]])
        report = {"command": command, **settings, "rows": rows}
        _files.write_text(Path(args.json), json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
