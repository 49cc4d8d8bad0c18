"""Named presets: a folder with card.json, verified weights and a model card README.

A preset folder holds `card.json` (model class and config, data, training recipe,
what training measured, sha256 of every weights file), `model.weights.h5`,
`README.md` and `samples.png`. `load` accepts a preset name or such a folder.
"""

import builtins
import difflib
import json
import os
from pathlib import Path

import keras

from keras_gen import _files, images, models

CARD = "card.json"
WEIGHTS = "model.weights.h5"


class WeightsError(ValueError):
    """Weights that are missing or do not match the sha256 in their card."""


def root() -> Path:
    """Where the shipped presets are: inside the installed package, or the checkout's zoo/."""
    package = Path(__file__).resolve().parent
    installed = package / "_presets"
    return installed if installed.is_dir() else package.parent / "zoo"


def list() -> builtins.list[str]:
    """Names of the shipped presets."""
    base = root()
    if not base.is_dir():
        return []
    return sorted(folder.name for folder in base.iterdir() if (folder / CARD).is_file())


def path(name_or_path: str | os.PathLike) -> Path:
    """The folder of a preset given by name or by path."""
    candidate = Path(name_or_path)
    if (candidate / CARD).is_file():
        return candidate
    name = str(name_or_path)
    presets = list()
    if name in presets:
        return root() / name
    if candidate.exists() or os.sep in name:
        raise ValueError(f"{name} is not a preset folder: it has no {CARD}")
    close = difflib.get_close_matches(name, presets, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"unknown preset {name!r}.{hint} Presets: {', '.join(presets) or '(none)'}; "
        "or pass the path of a preset folder written by `keras-gen train --output`."
    )


def card(name_or_path: str | os.PathLike) -> dict:
    """The parsed card.json of a preset."""
    with open(path(name_or_path) / CARD) as file:
        return json.load(file)


def build(card: dict) -> keras.Model:
    """A fresh, untrained model from the class and config a card names."""
    spec = card["model"]
    cls = getattr(models, spec["class"], None)
    if cls is None:
        raise ValueError(f"card names unknown model class {spec['class']!r}")
    return cls.from_config(spec["config"])


def load(name_or_path: str | os.PathLike, weights: bool = True) -> keras.Model:
    """The preset's model, with its verified trained weights unless weights=False.

    It comes compiled with the optimizers of the preset's recipe, ready to
    `evaluate` or to fine-tune with `fit`.
    """
    folder = path(name_or_path)
    preset_card = card(folder)
    model = build(preset_card)
    if weights:
        model.load_weights(weights_file(folder, preset_card))
    model.compile_from_config(preset_card["training"]["compile"])
    return model


def weights_file(folder: Path, preset_card: dict) -> Path:
    """The preset's weights file, fetched if only its URL is known, verified by sha256."""
    entry = preset_card.get("weights", {}).get(WEIGHTS)
    if entry is None:
        raise WeightsError(
            f"preset {folder.name!r} has no trained weights yet (no {WEIGHTS} in its card)"
        )
    file = folder / WEIGHTS
    if not file.exists():
        if not entry.get("url"):
            raise WeightsError(
                f"{file} is missing and the card gives no URL to fetch it from"
            )
        file = Path(
            keras.utils.get_file(
                f"keras_gen-{folder.name}-{entry['sha256'][:12]}.weights.h5",
                entry["url"],
                file_hash=entry["sha256"],
                hash_algorithm="sha256",
            )
        )
    found = _files.sha256(file)
    if found != entry["sha256"]:
        raise WeightsError(
            f"refusing {file}: its sha256 is {found}, the card says {entry['sha256']}. "
            "The file is corrupt or was replaced; restore it or re-train the preset."
        )
    return file


def write(
    folder: str | os.PathLike, model: keras.Model, preset_card: dict, samples
) -> Path:
    """Write a complete preset folder atomically: it appears whole or not at all."""
    folder = Path(folder)
    with _files.atomic_directory(folder) as staging:
        weights = staging / WEIGHTS
        # A fresh copy of the model carries no optimizer state: the zoo keeps weights only.
        clean = build(preset_card)
        clean.set_weights(model.get_weights())
        clean.save_weights(weights)
        preset_card = {
            **preset_card,
            "name": folder.name,
            "weights": {WEIGHTS: {"sha256": _files.sha256(weights), "url": None}},
        }
        if samples is not None:  # classifiers generate nothing
            images.write_png(staging / "samples.png", samples)
        (staging / CARD).write_text(json.dumps(preset_card, indent=2) + "\n")
        (staging / "README.md").write_text(model_card(preset_card))
    return folder


def update_card(folder: str | os.PathLike, preset_card: dict) -> None:
    """Rewrite a preset's card and the model card made from it; weights stay as they are."""
    folder = path(folder)
    _files.write_text(folder / CARD, json.dumps(preset_card, indent=2) + "\n")
    _files.write_text(folder / "README.md", model_card(preset_card))


def _at_commit(trained: dict) -> str:
    commit = trained.get("keras_gen_commit")
    return f" at commit {commit}" if commit else ""


def record_metrics(
    name_or_path: str | os.PathLike, metrics: builtins.list[dict], command: str
) -> None:
    """Put measured metrics into a preset's card, each naming the command that measured it.

    A metric of the same name is replaced; the weights are not touched.
    """
    preset_card = card(name_or_path)
    metrics = [{**metric, "command": command} for metric in metrics]
    names = {metric["name"] for metric in metrics}
    kept = [m for m in preset_card.get("metrics", []) if m["name"] not in names]
    update_card(name_or_path, {**preset_card, "metrics": kept + metrics})


def model_card(preset_card: dict) -> str:
    """The README of a preset, made from its card so the two never disagree."""
    c = preset_card
    trained = c.get("trained", {})
    lines = [
        f"# {c['name']}",
        "",
        c.get("description", ""),
        "",
    ]
    if "samples_command" in trained:
        lines += [
            "![samples](samples.png)",
            "",
            f"64 samples, `{trained['samples_command']}`.",
            "",
        ]
    lines += [
        "## Use",
        "",
        "```python",
        "import keras_gen",
        f"model = keras_gen.zoo.load({c['name']!r})",
        c.get(
            "usage",
            "images = model.generate(16, seed=0)  # float32 in [0, 1], (16, H, W, C)",
        ),
        "```",
        "",
        f"Intended use: {c.get('intended_use', '')}",
        "",
        "## Model",
        "",
        f"`keras_gen.models.{c['model']['class']}` with config `{json.dumps(c['model']['config'])}`.",
        "",
        "## Data",
        "",
        f"{c['data']['description']} Split: `{c['data']['split']}`.",
        "",
        f"Terms: {c['data']['terms']}",
        "",
        "## Training",
        "",
    ]
    if trained:
        lines += [
            f"Command: `{trained['command']}`",
            "",
            (
                f"{trained['epochs']} epochs, {trained['steps']} steps of {trained['batch_size']} "
                f"images, {trained['wall_time_s'] / 60:.0f} min on {trained['hardware']} "
                f"(TensorFlow {trained['tensorflow']}, keras_gen {trained['keras_gen']}"
                f"{_at_commit(trained)})."
            ),
            "",
        ]
    else:
        lines += ["Not trained yet.", ""]
    endpoints = builtins.list(build(c).serving_endpoints())
    lines += [
        "## Export",
        "",
        (
            f"`keras-gen export {c['name']} --format saved_model|serving|tflite --output DIR` "
            f"writes signatures {', '.join(f'`{n}`' for n in endpoints)}; "
            f"`serving_default` is `{endpoints[0]}` (see the main README for their inputs)."
        ),
        "",
    ]
    lines += ["## Measured", ""]
    by_command = {}
    for metric in c.get("metrics", []):
        by_command.setdefault(metric["command"], []).append(metric)
    for command, metrics in by_command.items():
        lines += [
            f"Measured by `{command}`:",
            "",
            "| metric | value |",
            "| --- | --- |",
        ]
        lines += [f"| {m['name']} | {m['value']:.4g} |" for m in metrics]
        lines.append("")
    if not by_command:
        lines.append("Nothing measured yet.")
    for file, entry in c.get("weights", {}).items():
        lines += [f"Weights: `{file}`, sha256 `{entry['sha256']}`."]
    for figure in c.get("figures", []):
        lines += [
            "",
            f"![{figure['file']}]({figure['file']})",
            "",
            f"{figure['caption']} Made by `{figure['command']}`.",
        ]
    lines += ["", "## Limitations", "", c.get("limitations", ""), ""]
    return "\n".join(lines)
