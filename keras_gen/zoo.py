"""Named presets: a folder with card.json, verified weights and a model card README.

A preset folder holds `card.json` (model class and config, data, training recipe,
what training measured, sha256 of every weights file), `model.weights.h5`,
`README.md` and `samples.png`. `load` accepts a preset name or such a folder:

- a bare name (a str with no path separator, not starting with "." or "~") is always
  a shipped preset, so a folder of the same name in the working directory never
  shadows it;
- anything else (a `pathlib.Path`, "./name", "runs/name", "~/name") is a folder.

Every card is checked against `CARD_SCHEMA` when read, and the files a preset holds
must be regular files inside its folder: symlinks are refused, not resolved.
"""

import builtins
import copy
import difflib
import inspect
import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import keras

from keras_gen import _files, export, images, models
from keras_gen._choices import EVALUATION_PARTS

CARD = "card.json"
WEIGHTS = "model.weights.h5"


class WeightsError(ValueError):
    """Weights that are missing or do not match the sha256 in their card."""


class CardError(ValueError):
    """A card.json that is not valid JSON, does not fit `CARD_SCHEMA`, or names a
    model class or config that keras_gen cannot build."""


# --- The card schema ----------------------------------------------------------------


class Kind(NamedTuple):
    """What a card value must be: `accepts` tests it; `description` follows "must be"."""

    description: str
    accepts: Callable[[object], bool]


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_file_name(value) -> bool:
    """A plain name of a file in the preset folder: no path, so no way out of it."""
    return (
        isinstance(value, str)
        and value not in ("", ".", "..")
        and not any(character in value for character in "/\\\0")
    )


TEXT = Kind("a string", lambda value: isinstance(value, str))
TEXT_OR_NULL = Kind("a string or null", lambda v: v is None or isinstance(v, str))
FLAG = Kind("true or false", lambda value: isinstance(value, bool))
INTEGER = Kind("an integer", _is_integer)
POSITIVE_INTEGER = Kind("a positive integer", lambda v: _is_integer(v) and v > 0)
NUMBER = Kind("a number", lambda v: _is_integer(v) or isinstance(v, float))
OBJECT = Kind("a JSON object", lambda value: isinstance(value, dict))
LIST = Kind("a list", lambda value: isinstance(value, builtins.list))
SEQUENCE = Kind("a list", lambda v: isinstance(v, (builtins.list, tuple)))
SHA256 = Kind(
    "a sha256: 64 lowercase hex digits",
    lambda v: isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v) is not None,
)
POLICY = Kind(
    'false, true, "mixed_float16" or "mixed_bfloat16"',
    lambda v: isinstance(v, bool) or v in ("mixed_float16", "mixed_bfloat16"),
)
FILE_NAME = Kind('a file name in the preset folder (no "/", not "..")', _is_file_name)

PARTS_LIST = Kind(
    f"a list of some of {', '.join(EVALUATION_PARTS)}",
    lambda v: (
        isinstance(v, builtins.list)
        and bool(v)
        and all(part in EVALUATION_PARTS for part in v)
    ),
)

PART = Kind(f"one of {', '.join(EVALUATION_PARTS)}", lambda v: v in EVALUATION_PARTS)

REQUIRED, OPTIONAL = True, False

# Every key a card may hold, whether it must be there (when its parent is), and what
# it must be. "*" stands for any file name in the preset folder, "[]" for any item of
# a list. An object whose keys are listed here is closed: an unknown key (a typo) is
# refused. One whose keys are not (model.config, training.compile) is open: the model
# class and Keras check those.
CARD_SCHEMA: dict[str, tuple[bool, Kind]] = {
    "name": (OPTIONAL, TEXT),
    "description": (OPTIONAL, TEXT),
    "usage": (OPTIONAL, TEXT),
    "intended_use": (OPTIONAL, TEXT),
    "limitations": (OPTIONAL, TEXT),
    "model": (REQUIRED, OBJECT),
    "model.class": (REQUIRED, TEXT),
    "model.config": (REQUIRED, OBJECT),
    "data": (REQUIRED, OBJECT),
    "data.dataset": (REQUIRED, TEXT),
    "data.split": (REQUIRED, TEXT),
    "data.description": (REQUIRED, TEXT),
    "data.terms": (REQUIRED, TEXT),
    "data.labels": (OPTIONAL, FLAG),
    "data.binarize": (OPTIONAL, FLAG),
    # Preset name -> weights sha256 of the generators whose samples a model was
    # trained on or measured with (detector_faces).
    "data.generators": (OPTIONAL, OBJECT),
    "training": (REQUIRED, OBJECT),
    "training.epochs": (REQUIRED, POSITIVE_INTEGER),
    "training.batch_size": (REQUIRED, POSITIVE_INTEGER),
    "training.seed": (REQUIRED, INTEGER),
    "training.compile": (REQUIRED, OBJECT),
    # The command that makes this preset when `keras-gen train` cannot (its data is
    # made by a tool), e.g. "python tools/detector.py".
    "training.made_by": (OPTIONAL, TEXT),
    # The measurement at the end of training, when the defaults would take hours.
    "training.evaluation": (OPTIONAL, OBJECT),
    "training.evaluation.num_samples": (OPTIONAL, POSITIVE_INTEGER),
    "training.evaluation.class_samples": (OPTIONAL, POSITIVE_INTEGER),
    # The parts the end of training measures; `keras-gen evaluate --measure` the rest.
    "training.evaluation.measure": (OPTIONAL, PARTS_LIST),
    "trained": (OPTIONAL, OBJECT),
    "trained.command": (REQUIRED, TEXT),
    "trained.samples_command": (OPTIONAL, TEXT),
    "trained.epochs": (REQUIRED, POSITIVE_INTEGER),
    "trained.steps": (REQUIRED, INTEGER),
    "trained.batch_size": (REQUIRED, POSITIVE_INTEGER),
    "trained.seed": (REQUIRED, INTEGER),
    "trained.replicas": (OPTIONAL, POSITIVE_INTEGER),
    # The policy it computed in, or false; true from before bfloat16 was chosen
    # on CPUs meant mixed_float16.
    "trained.mixed_precision": (OPTIONAL, POLICY),
    # The preset a fine-tuning run started from (keras-gen train --init-from): its
    # weights, and the steps and seconds of all the training they had had.
    "trained.init_from": (OPTIONAL, OBJECT),
    "trained.init_from.preset": (REQUIRED, TEXT),
    "trained.init_from.weights_sha256": (REQUIRED, SHA256),
    "trained.init_from.steps": (OPTIONAL, INTEGER),
    "trained.init_from.wall_time_s": (OPTIONAL, NUMBER),
    # A run's decay of the recipe's constant rate (keras-gen train --learning-rate-decay).
    "trained.learning_rate_decay": (OPTIONAL, TEXT),
    "trained.wall_time_s": (REQUIRED, NUMBER),
    "trained.hardware": (REQUIRED, TEXT),
    "trained.tensorflow": (REQUIRED, TEXT),
    "trained.keras": (REQUIRED, TEXT),
    "trained.keras_gen": (REQUIRED, TEXT),
    "trained.keras_gen_commit": (OPTIONAL, TEXT_OR_NULL),
    "trained.finished": (REQUIRED, TEXT),
    "weights": (OPTIONAL, OBJECT),
    "weights.*": (REQUIRED, OBJECT),
    "weights.*.sha256": (REQUIRED, SHA256),
    "weights.*.url": (REQUIRED, TEXT_OR_NULL),
    "metrics": (OPTIONAL, LIST),
    "metrics[]": (REQUIRED, OBJECT),
    "metrics[].name": (REQUIRED, TEXT),
    "metrics[].value": (REQUIRED, NUMBER),
    "metrics[].command": (REQUIRED, TEXT),
    "metrics[].samples": (OPTIONAL, POSITIVE_INTEGER),
    # The evaluation part that measured it (keras-gen evaluate --measure).
    "metrics[].part": (OPTIONAL, PART),
    "figures": (OPTIONAL, LIST),
    "figures[]": (REQUIRED, OBJECT),
    "figures[].file": (REQUIRED, FILE_NAME),
    "figures[].caption": (REQUIRED, TEXT),
    "figures[].command": (REQUIRED, TEXT),
    # The headline metric measured every few epochs of training (keras-gen train
    # --eval-every), on fewer samples than the final "metrics"; drawn in a figure.
    "training_curve": (OPTIONAL, OBJECT),
    "training_curve.command": (REQUIRED, TEXT),
    "training_curve.metric": (REQUIRED, TEXT),
    "training_curve.samples": (REQUIRED, POSITIVE_INTEGER),
    "training_curve.points": (REQUIRED, LIST),
    "training_curve.points[]": (REQUIRED, OBJECT),
    "training_curve.points[].epoch": (REQUIRED, POSITIVE_INTEGER),
    "training_curve.points[].step": (REQUIRED, POSITIVE_INTEGER),
    "training_curve.points[].value": (REQUIRED, NUMBER),
}


def _split(pattern: str) -> tuple[str, str]:
    """Parent and last key of a pattern: "metrics[].name" gives "metrics[]", "name"."""
    if pattern.endswith("[]"):
        return pattern[:-2], "[]"
    parent, _, key = pattern.rpartition(".")
    return parent, key


_CHILDREN: dict[str, dict[str, str]] = {}
for _pattern in CARD_SCHEMA:
    _parent, _key = _split(_pattern)
    _CHILDREN.setdefault(_parent, {})[_key] = _pattern


def _show(value) -> str:
    shown = json.dumps(value, default=str)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _check(value, pattern: str, where: str, source) -> None:
    """Check `value` (at schema `pattern`, shown as `where`) and everything inside it."""
    kind = CARD_SCHEMA[pattern][1] if pattern else OBJECT
    if not kind.accepts(value):
        raise CardError(
            f"{source}: {where or 'the card'} must be {kind.description}, "
            f"got {_show(value)}"
        )
    children = _CHILDREN.get(pattern, {})
    if "[]" in children:
        for index, item in enumerate(value):
            _check(item, children["[]"], f"{where}[{index}]", source)
    elif "*" in children:
        for name, item in value.items():
            if not _is_file_name(name):
                raise CardError(
                    f"{source}: {where} names {name!r}, which is not a plain file "
                    "name: a card names files inside its own folder only."
                )
            _check(item, children["*"], f"{where}[{json.dumps(name)}]", source)
    elif children:
        _check_keys(value, children, where, source)


def _check_keys(value: dict, children: dict[str, str], where: str, source) -> None:
    """A closed object: no unknown key, every required key, each one checked."""

    def at(key):
        return f"{where}.{key}" if where else key

    for key in value:
        if key not in children:
            close = difflib.get_close_matches(key, children, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise CardError(
                f"{source}: unknown key {at(key)}.{hint} Keys allowed here: "
                f"{', '.join(children)}; fix or remove it."
            )
    for key, pattern in children.items():
        if key in value:
            _check(value[key], pattern, at(key), source)
        elif CARD_SCHEMA[pattern][0] is REQUIRED:
            raise CardError(
                f"{source}: {at(key)} is missing; add it "
                f"({CARD_SCHEMA[pattern][1].description})."
            )


# --- Model classes and their configs ------------------------------------------------

# Taken by keras.Model itself, so a config may hold them besides the constructor's own.
_KERAS_ARGUMENTS = ("name", "trainable", "dtype")


def model_class(preset_card: dict) -> type:
    """The keras_gen model class a card names."""
    return _model_class(preset_card["model"], preset_card.get("name", "card"))


def _model_class(model_spec: dict, source) -> type:
    """The keras_gen model class a card's model.class names."""
    name = model_spec["class"]
    if name not in models.__all__:
        close = difflib.get_close_matches(name, models.__all__, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise CardError(
            f"{source}: model.class {name!r} is an unknown model class.{hint} "
            f"Known classes: {', '.join(models.__all__)}."
        )
    return getattr(models, name)


def _like_default(default) -> Kind | None:
    """What a value given for a constructor argument with this default must be."""
    for types, kind in (
        (bool, FLAG),
        (int, INTEGER),
        (float, NUMBER),
        (str, TEXT),
        ((tuple, builtins.list), SEQUENCE),
        (dict, OBJECT),
    ):
        if isinstance(default, types):
            return kind
    return None


def _config_problem(cls: type, config: dict) -> str | None:
    """The first key of model.config that `cls` cannot take, described; None if all fit.

    Keras reports these as a TypeError about reviving a model that names no key;
    checking against the constructor's signature and defaults names it.
    """
    parameters = {
        p.name: p
        for p in builtins.list(inspect.signature(cls.__init__).parameters.values())[1:]
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    for key, value in config.items():
        if key in _KERAS_ARGUMENTS:
            continue
        if key not in parameters:
            close = difflib.get_close_matches(key, parameters, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return (
                f"model.config.{key} is not an argument of {cls.__name__}{hint}; "
                f"its arguments: {', '.join(parameters)}"
            )
        default = parameters[key].default
        kind = _like_default(default)
        if kind is not None and not kind.accepts(value):
            return (
                f"model.config.{key} must be {kind.description} like its default "
                f"{_show(default)}, got {_show(value)}"
            )
    for key, parameter in parameters.items():
        if parameter.default is parameter.empty and key not in config:
            return (
                f"model.config.{key} is missing: {cls.__name__} has no default for it"
            )
    return None


def _check_model(model_spec: dict, source) -> type:
    """The class of a schema-checked model block, after checking its config fits it."""
    cls = _model_class(model_spec, source)
    problem = _config_problem(cls, model_spec["config"])
    if problem is not None:
        raise CardError(f"{source}: {problem}.")
    return cls


def validate(preset_card: dict, source: str | os.PathLike = "the card") -> dict:
    """Check a card against `CARD_SCHEMA` and its model class; return it unchanged.

    The error names `source` (the card's file) and the key path, so a broken card is
    refused where it is read, not later as a KeyError deep inside training or export.
    """
    _check(preset_card, "", "", source)
    _check_model(preset_card["model"], source)
    return preset_card


# --- Names, folders and files -------------------------------------------------------


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


def _is_bare_name(name_or_path: str | os.PathLike) -> bool:
    """Whether this names a shipped preset rather than a folder (see the module doc)."""
    if not isinstance(name_or_path, str):
        return False
    separators = {"/", os.sep, os.altsep} - {None}
    return not any(separator in name_or_path for separator in separators) and not (
        name_or_path.startswith((".", "~"))
    )


def path(name_or_path: str | os.PathLike) -> Path:
    """The folder of a preset: a bare name is a shipped preset, anything else a folder.

    A bare name is a str with no path separator that starts with neither "." nor "~";
    a `Path`, or a str such as "./name" or "runs/name", is a folder. So a folder in
    the working directory never shadows a shipped preset of the same name.
    """
    if _is_bare_name(name_or_path):
        return _shipped(name_or_path)
    return _preset_folder(Path(name_or_path).expanduser())


def _shipped(name: str) -> Path:
    presets = list()
    if name in presets:
        return root() / name
    hint = ""
    if name and Path(name).is_dir():
        hint = f" A folder {name} is here: did you mean ./{name}?"
    close = difflib.get_close_matches(name, presets, n=1)
    if close:
        hint += f" Did you mean {close[0]!r}?"
    raise ValueError(
        f"unknown preset {name!r}.{hint} Presets: {', '.join(presets) or '(none)'}; "
        "or pass the path of a preset folder written by `keras-gen train --output`, "
        "such as ./NAME."
    )


def _preset_folder(folder: Path) -> Path:
    if not os.path.lexists(folder):
        hint = (
            f" To use the shipped preset, pass its bare name {folder.name!r}."
            if folder.name in list()
            else ""
        )
        raise ValueError(f"no preset folder at {folder}: it does not exist.{hint}")
    if not folder.is_dir():
        raise ValueError(
            f"{folder} is not a preset folder: it is not a folder. "
            f"Pass a folder holding a {CARD}."
        )
    if not os.path.lexists(folder / CARD):
        raise ValueError(
            f"{folder} is not a preset folder: it has no {CARD}. Pass the path of a "
            "preset folder written by `keras-gen train --output`."
        )
    _require_regular_file(folder / CARD, CardError)
    return folder


_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _require_regular_file(file: Path, error: type[ValueError]) -> None:
    """Refuse a preset file that is a symlink or not a regular file, before reading it.

    Reading follows the bytes: a FIFO blocks forever and /dev/zero never ends, so the
    sha256 check would hang. A symlink could make a card vouch for a file outside its
    folder; a preset folder holds its files itself, so links are refused, not resolved.
    """
    mode = os.lstat(file).st_mode
    if stat.S_ISLNK(mode):
        raise error(
            f"refusing {file}: it is a symlink (to {os.readlink(file)}). A preset "
            "folder holds its own files: replace the link with a copy of the file."
        )
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "special")
        raise error(
            f"refusing {file}: it is {kind}, not a regular file. Put the real file "
            "there (copy the preset again or re-train it)."
        )


def _read_json(file: Path):
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise CardError(
            f"{file} is not UTF-8 text (byte {error.start}); a card is a JSON file."
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise CardError(
            f"{file}: invalid JSON at line {error.lineno}, column {error.colno}: "
            f"{error.msg}. Fix the card there."
        ) from None


def card(name_or_path: str | os.PathLike) -> dict:
    """The parsed card.json of a preset, checked against `CARD_SCHEMA`."""
    file = path(name_or_path) / CARD
    return validate(_read_json(file), file)


# --- Building and loading -----------------------------------------------------------


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def build(card: dict, source: str | os.PathLike = "the card") -> keras.Model:
    """A fresh, untrained model from the class and config a card names.

    Only the card's model block is checked here, so a partial card (a recipe being
    written) builds; `source` names the card in errors.
    """
    if not isinstance(card, dict) or "model" not in card:
        raise CardError(f"{source}: model is missing; add it ({OBJECT.description}).")
    _check(card["model"], "model", "model", source)
    cls = _check_model(card["model"], source)
    try:
        return cls.from_config(card["model"]["config"])
    except (TypeError, ValueError) as error:
        raise CardError(
            f"{source}: {cls.__name__} refuses model.config: {_one_line(error)}"
        ) from error


def _compile(model: keras.Model, preset_card: dict, source) -> None:
    try:
        model.compile_from_config(copy.deepcopy(preset_card["training"]["compile"]))
    except (TypeError, ValueError, KeyError) as error:
        raise CardError(
            f"{source}: {type(model).__name__} refuses training.compile: "
            f"{_one_line(error)}"
        ) from error


def load(name_or_path: str | os.PathLike, weights: bool = True) -> keras.Model:
    """The preset's model, with its verified trained weights unless weights=False.

    It comes compiled with the optimizers of the preset's recipe, ready to
    `evaluate` or to fine-tune with `fit`. The weights are verified before the model
    is built, so a bad file is refused before any slow work.
    """
    folder = path(name_or_path)
    source = folder / CARD
    preset_card = card(folder)
    file = weights_file(folder, preset_card) if weights else None
    model = build(preset_card, source)
    if file is not None:
        model.load_weights(file)
    _compile(model, preset_card, source)
    return model


def weights_file(folder: Path, preset_card: dict) -> Path:
    """The preset's weights file, fetched if only its URL is known, verified by sha256."""
    entry = preset_card.get("weights", {}).get(WEIGHTS)
    if entry is None:
        raise WeightsError(
            f"preset {folder.name!r} has no trained weights yet (no {WEIGHTS} in its "
            f"card); train its recipe with `keras-gen train {folder.name} --output DIR` "
            "and use DIR"
        )
    file = folder / WEIGHTS
    if not os.path.lexists(file):
        file = _fetch(folder, file, entry)
    _require_regular_file(file, WeightsError)
    found = _files.sha256(file)
    if found != entry["sha256"]:
        raise WeightsError(
            f"refusing {file}: its sha256 is {found}, the card says {entry['sha256']}. "
            "The file is corrupt or was replaced; restore it or re-train the preset."
        )
    return file


def _fetch(folder: Path, file: Path, entry: dict) -> Path:
    """Download missing weights from the card's URL into the Keras cache."""
    if not entry.get("url"):
        raise WeightsError(
            f"{file} is missing and the card gives no URL to fetch it from"
        )
    return Path(
        keras.utils.get_file(
            f"keras_gen-{folder.name}-{entry['sha256'][:12]}.weights.h5",
            entry["url"],
            file_hash=entry["sha256"],
            hash_algorithm="sha256",
        )
    )


def write(
    folder: str | os.PathLike,
    model: keras.Model,
    preset_card: dict,
    samples,
    overwrite: bool = False,
    figures: dict | None = None,
) -> Path:
    """Write a complete preset folder atomically: it appears whole or not at all.

    `figures`: file name -> (images, columns), written as PNG grids beside the
    card, which lists them. An existing folder is replaced only if keras_gen
    wrote it, or with `overwrite`.
    """
    folder = Path(folder)
    with _files.atomic_directory(folder, overwrite) as staging:
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
        for file, (shown, columns) in (figures or {}).items():
            images.write_png(staging / file, shown, columns=columns)
        (staging / CARD).write_text(json.dumps(preset_card, indent=2) + "\n")
        (staging / "README.md").write_text(model_card(preset_card))
    return folder


def update_card(folder: str | os.PathLike, preset_card: dict) -> None:
    """Rewrite a preset's card and the model card made from it; weights stay as they are."""
    folder = path(folder)
    _files.write_text(folder / CARD, json.dumps(preset_card, indent=2) + "\n")
    _files.write_text(folder / "README.md", model_card(preset_card))


def record_figure(
    name_or_path: str | os.PathLike, figure: dict, shown, columns: int
) -> None:
    """Write a figure (images tiled `columns` wide) into a preset folder and list its
    card entry (file, caption, command) in the card, replacing one of the same file.

    A PNG there that keras_gen did not write is refused, as every output is.
    """
    folder = path(name_or_path)
    preset_card = card(folder)
    kept = [f for f in preset_card.get("figures", []) if f["file"] != figure["file"]]
    updated = {**preset_card, "figures": [*kept, figure]}
    validate(updated, folder / CARD)
    images.write_png(folder / figure["file"], shown, columns=columns)
    update_card(folder, updated)


def _at_commit(trained: dict) -> str:
    commit = trained.get("keras_gen_commit")
    return f" at commit {commit}" if commit else ""


def record_metrics(
    name_or_path: str | os.PathLike, metrics: builtins.list[dict], command: str
) -> None:
    """Put measured metrics into a preset's card, each naming the command that measured it.

    A metric of the same name is replaced, and so is every old metric of an
    evaluation part measured again (a number renamed since, or no longer reported,
    would otherwise stay in the card under a command that no longer gives it). The
    weights are not touched. The new card is checked before it is written, so a bad
    metric never lands in a card.
    """
    preset_card = card(name_or_path)
    metrics = [{**metric, "command": command} for metric in metrics]
    names = {metric["name"] for metric in metrics}
    parts = {metric["part"] for metric in metrics if "part" in metric}
    kept = [
        m
        for m in preset_card.get("metrics", [])
        if m["name"] not in names and m.get("part") not in parts
    ]
    updated = {**preset_card, "metrics": kept + metrics}
    validate(updated, path(name_or_path) / CARD)
    update_card(name_or_path, updated)


def model_card(preset_card: dict) -> str:
    """The README of a preset, made from its card so the two never disagree."""
    sections = (
        _card_use,
        _card_about,
        _card_training,
        _card_training_curve,
        _card_export,
        _card_sampling_steps,
        _card_per_class,
        _card_measured,
        _card_figures,
    )
    lines = [line for section in sections for line in section(preset_card)]
    lines += ["", "## Limitations", "", preset_card.get("limitations", ""), ""]
    return "\n".join(lines)


def _card_use(c: dict) -> builtins.list[str]:
    trained = c.get("trained", {})
    lines = [f"# {c['name']}", "", c.get("description", ""), ""]
    if "samples_command" in trained:
        samples = f"64 samples, `{trained['samples_command']}`."
        lines += ["![samples](samples.png)", "", samples, ""]
    usage = "images = model.generate(16, seed=0)  # float32 in [0, 1], (16, H, W, C)"
    return lines + [
        "## Use",
        "",
        "```python",
        "import keras_gen",
        f"model = keras_gen.zoo.load({c['name']!r})",
        c.get("usage", usage),
        "```",
        "",
        f"Intended use: {c.get('intended_use', '')}",
        "",
    ]


def _card_about(c: dict) -> builtins.list[str]:
    config = json.dumps(c["model"]["config"])
    return [
        "## Model",
        "",
        f"`keras_gen.models.{c['model']['class']}` with config `{config}`.",
        "",
        "## Data",
        "",
        f"{c['data']['description']} Split: `{c['data']['split']}`.",
        "",
        f"Terms: {c['data']['terms']}",
        "",
    ]


def _card_training(c: dict) -> builtins.list[str]:
    trained = c.get("trained", {})
    if not trained:
        return ["## Training", "", "Not trained yet.", ""]
    return [
        "## Training",
        "",
        f"Command: `{trained['command']}`",
        "",
        (
            f"{trained['epochs']} epochs, {trained['steps']} steps of {trained['batch_size']} "
            f"images, {trained['wall_time_s'] / 60:.0f} min on {trained['hardware']} "
            f"(TensorFlow {trained['tensorflow']}, keras_gen {trained['keras_gen']}"
            f"{_at_commit(trained)})."
        ),
        "",
        *_card_parent(trained),
        *_card_decay(trained),
    ]


def _card_parent(trained: dict) -> builtins.list[str]:
    """Where a fine-tuned preset's training started: the weights it was given."""
    parent = trained.get("init_from")
    if parent is None:
        return []
    before = ""
    if "steps" in parent and "wall_time_s" in parent:
        before = (
            f", which had been trained for {parent['steps']} steps in "
            f"{parent['wall_time_s'] / 60:.0f} min"
        )
    return [
        (
            f"Fine-tuned: it started from the weights of `{parent['preset']}` "
            f"(sha256 `{parent['weights_sha256']}`){before}."
        ),
        "",
    ]


def _card_decay(trained: dict) -> builtins.list[str]:
    """How a run changed the recipe's learning rate, if it did."""
    if trained.get("learning_rate_decay") != "cosine":
        return []
    return [
        (
            "Each optimizer's learning rate fell from the recipe's to zero by a half "
            "cosine over the steps its network trained (`--learning-rate-decay "
            "cosine`); the recipe keeps its own."
        ),
        "",
    ]


def curve_measured_on(metric: str) -> str:
    """What a training curve's point measures: a test metric, test images; any
    other (FID and the like), generated samples (against as many test images)."""
    return "test images" if metric.startswith("test ") else "samples"


def _card_training_curve(c: dict) -> builtins.list[str]:
    curve = c.get("training_curve")
    if curve is None:
        return []
    measured_on = curve_measured_on(curve["metric"])
    against = " and as many test images" if measured_on == "samples" else ""
    lines = [
        "## Training curve",
        "",
        (
            f"`{curve['metric']}` during training, measured on {curve['samples']} "
            f"{measured_on}{against} by `{curve['command']}`:"
        ),
        "",
        "| epoch | step | value |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| {p['epoch']} | {p['step']} | {p['value']:.4g} |" for p in curve["points"]
    ]
    return lines + [""]


def _card_export(c: dict) -> builtins.list[str]:
    endpoints = builtins.list(build(c).serving_endpoints())
    formats = "saved_model|serving"
    if any(name not in export.NOT_IN_TFLITE for name in endpoints):
        formats += "|tflite"  # a TFLite file holds only builtin-op signatures
    return [
        "## Export",
        "",
        (
            f"`keras-gen export {c['name']} --format {formats} --output DIR` "
            f"writes signatures {', '.join(f'`{n}`' for n in endpoints)}; "
            f"`serving_default` is `{endpoints[0]}` (see the main README for their inputs)."
        ),
        "",
    ]


# The names `evaluation` gives a model's metrics at each number of sampling steps.
STEPS_FID = re.compile(r"FID \((?P<extractor>[^()]+)\), (?P<steps>\d+) sampling steps$")
STEPS_SECONDS = re.compile(
    r"seconds to generate (?P<count>\d+) samples, (?P<steps>\d+) sampling steps"
    r"(?: \((?P<machine>.+)\))?"
)


class _StepsTradeoff(NamedTuple):
    """A diffusion card's metrics at each number of sampling steps."""

    fids: dict  # steps -> FID
    seconds: dict  # steps -> seconds for `count` samples
    extractor: str | None
    count: str | None
    machine: str | None  # where the seconds were measured
    command: str | None  # the command that measured the FIDs


def _steps_tradeoff(c: dict) -> _StepsTradeoff:
    fids, seconds, extractor, count, machine, command = {}, {}, None, None, None, None
    for metric in c.get("metrics", []):
        if found := STEPS_FID.match(metric["name"]):
            fids[int(found["steps"])] = metric["value"]
            extractor, command = found["extractor"], metric.get("command")
        elif found := STEPS_SECONDS.match(metric["name"]):
            seconds[int(found["steps"])] = metric["value"]
            count, machine = found["count"], found["machine"]
    return _StepsTradeoff(fids, seconds, extractor, count, machine, command)


def _card_sampling_steps(c: dict) -> builtins.list[str]:
    """Quality against time over the sampling steps of a diffusion preset."""
    fids, seconds, extractor, count, _, _ = _steps_tradeoff(c)
    if not fids:
        return []
    lines = [
        "## Sampling steps",
        "",
        "Fewer steps sample faster and worse (numbers from the Measured section):",
        "",
        f"| steps | FID ({extractor}) | seconds for {count} samples |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| {steps} | {fids[steps]:.4g} | {seconds.get(steps, float('nan')):.3g} |"
        for steps in sorted(fids)
    ]
    return lines + [""]


STEPS_FIGURE = "sampling_steps.png"


def steps_tradeoff_figure(c: dict) -> tuple[dict, tuple] | None:
    """The figure of a card's FID against sampling time, a point per number of
    sampling steps: (card entry, (images, columns)); None without two such points."""
    fids, seconds, extractor, count, machine, command = _steps_tradeoff(c)
    steps = sorted(set(fids) & set(seconds))
    if len(steps) < 2:
        return None
    plot = images.line_plot(
        [seconds[s] for s in steps],
        [fids[s] for s in steps],
        f"seconds to generate {count} samples" + (f" ({machine})" if machine else ""),
        f"FID ({extractor})",
        point_labels=[f"{s} steps" for s in steps],
    )
    entry = {
        "file": STEPS_FIGURE,
        "caption": (
            "What fewer sampling steps save in time and cost in quality: FID "
            f"({extractor}) against the seconds to generate {count} samples at "
            f"{', '.join(map(str, steps))} steps, from the card's metrics."
        ),
        "command": command,
    }
    return entry, (plot[None], 1)


PER_CLASS = re.compile(
    r"(?P<what>classifier agrees with requested|floor \(real \w+\): "
    r"classifier agrees with true|FID) (?P<head>\w+)=(?P<name>.+?)(?: vs real .+)? "
    r"\((?P<by>[^()]+)\)$"
)
PER_CLASS_COLUMNS = {  # the start of a metric's name -> its column
    "classifier": "agreement of samples",
    "floor": "agreement on real held-out images",
    "FID": "FID against that class",
}


def _card_per_class(c: dict) -> builtins.list[str]:
    """A conditional preset's numbers per requested class, beside the classifier's
    agreement with real images of that class (the most its samples could reach)."""
    rows, by = {}, None
    for metric in c.get("metrics", []):
        if found := PER_CLASS.match(metric["name"]):
            key = (found["head"], found["name"])
            column = found["what"].split(" ")[0]
            rows.setdefault(key, {})[column] = metric["value"]
            by = found["by"]
    if not rows:
        return []
    lines = [
        "## Per class",
        "",
        f"Measured with {by} (numbers from the Measured section):",
        "",
        "| class | " + " | ".join(PER_CLASS_COLUMNS.values()) + " |",
        "| --- |" + " --- |" * len(PER_CLASS_COLUMNS),
    ]
    for (head, name), values in rows.items():
        cells = [f"{values[w]:.3g}" if w in values else "-" for w in PER_CLASS_COLUMNS]
        lines.append(f"| {head}={name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _card_measured(c: dict) -> builtins.list[str]:
    lines = ["## Measured", ""]
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
    return lines


def _card_figures(c: dict) -> builtins.list[str]:
    lines = []
    for figure in c.get("figures", []):
        caption = f"{figure['caption']} Made by `{figure['command']}`."
        lines += ["", f"![{figure['file']}]({figure['file']})", "", caption]
    return lines
