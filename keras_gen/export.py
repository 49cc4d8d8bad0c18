"""Deployable artifacts: a SavedModel with named signatures, TF Serving's layout, TFLite.

Each model names its endpoints (`serving_endpoints()`), e.g. GANs `generate` and
`sample`, VAEs `decode`, `encode`, `reconstruct`, `score` and `sample`, classifiers
`classify`. The first is also `serving_default`. The artifacts need TensorFlow
only: no keras_gen, no custom objects.

Bad requests are refused at the signature as the Keras methods refuse them: wrong
shapes, an empty batch, NaN or infinite latents, pixels outside [0, 1], labels out
of range. TFLite has no builtin op that fails a request, so its converter drops
those checks (shapes aside); there, a row with a NaN or infinite input comes out
NaN rather than as a plausible image. Outputs are checked before any tracing, and
nothing keras_gen did not write is replaced without `overwrite=True`.
"""

import numbers
import os
import re
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from keras_gen import _files

FORMATS = ("saved_model", "serving", "tflite")
QUANTIZATIONS = ("none", "float16", "dynamic_range")

# Signatures that draw noise need TensorFlow's stateless random ops, which TFLite has
# only as Flex (SELECT_TF_OPS) kernels. TFLite files leave them out and stay on
# builtin ops: on a device, draw the latents yourself and call generate or decode.
NOT_IN_TFLITE = ("sample", "score")

# TF Serving's models.config is protobuf text, where "#" starts a comment; this first
# line tells keras_gen's own file (which it rewrites) from one a user wrote.
CONFIG_HEADER = (
    "# Written by keras_gen; every export into this folder rewrites it. "
    "Edit a copy to keep changes.\n"
)
MODEL_NAME = re.compile(r"[A-Za-z0-9._-]+")


def saved_model(
    model: keras.Model,
    directory: str | os.PathLike,
    uint8: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a SavedModel with the model's named signatures; `uint8` gives 0..255 images.

    An existing `directory` is replaced only if keras_gen wrote it or it is empty,
    unless `overwrite`; that is checked before the model is traced.
    """
    directory = _files.claim_folder(directory, overwrite)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (function, signature) in model.serving_endpoints().items():
        function = _checked(_with_image_dtype(function, uint8), signature)
        archive.add_endpoint(name, function, input_signature=signature)
    with _files.atomic_directory(directory, overwrite) as staging:
        archive.write_out(str(staging), verbose=False)
    return directory


def serving(
    model: keras.Model,
    directory: str | os.PathLike,
    model_name: str,
    version: int | None = None,
    uint8: bool = False,
    overwrite: bool = False,
) -> Path:
    """TF Serving's layout, DIR/<model_name>/<version>/, and a models.config naming it.

    Without `version`, the next number after those present. DIR is added to, never
    replaced, and an existing version is never overwritten; models.config is
    replaced only if keras_gen wrote it, unless `overwrite`. All of this is checked
    before the model is traced.
    """
    root = Path(directory)
    base = root / _checked_model_name(model_name)
    for folder in (root, base):
        if folder.exists() and not folder.is_dir():
            raise _files.OverwriteError(
                f"{folder} is not a folder; TF Serving's layout needs one there. "
                "Choose another --output."
            )
    version = _free_version(base, version)
    _files.claim_file(root / "models.config", _config_signed, overwrite)
    saved_model(model, base / str(version), uint8=uint8)
    _files.write_text(
        root / "models.config", _models_config(root), _config_signed, overwrite
    )
    return base / str(version)


def _checked_model_name(name: str) -> str:
    """A name TF Serving's config and URLs take as is, and that stays inside DIR."""
    if not MODEL_NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(
            f"cannot serve a model named {name!r}: use only letters, digits, '.', "
            "'_' and '-' (and not '.' or '..'); rename the preset folder"
        )
    return name


def _free_version(base: Path, version) -> int:
    """The version to write: `version` if free, else the next after those present."""
    if version is not None and (
        isinstance(version, bool)
        or not isinstance(version, numbers.Integral)
        or version < 1
    ):
        raise ValueError(
            f"--version must be a positive integer, got {version!r}; TF Serving "
            "loads only version folders named 1, 2, 3, ..."
        )
    existing = (
        sorted(int(p.name) for p in base.iterdir() if re.fullmatch("[0-9]+", p.name))
        if base.is_dir()
        else []
    )
    if version is None:
        return existing[-1] + 1 if existing else 1
    if version in existing:
        raise ValueError(
            f"{base / str(version)} exists; TF Serving versions are immutable. "
            f"Pass another --version (the next free one is {existing[-1] + 1})."
        )
    return int(version)


def _models_config(root: Path) -> str:
    """models.config listing every model in `root`, so a second preset exported
    beside the first is served with it."""
    served = sorted(
        folder
        for folder in root.iterdir()
        if folder.is_dir()
        and any((v / "saved_model.pb").is_file() for v in folder.glob("[0-9]*"))
    )
    entries = "".join(
        "  config {\n"
        f"    name: {_quoted(folder.name)}\n"
        f"    base_path: {_quoted(str(folder.resolve()))}\n"
        '    model_platform: "tensorflow"\n'
        "    model_version_policy { all {} }\n"
        "  }\n"
        for folder in served
    )
    return CONFIG_HEADER + "model_config_list {\n" + entries + "}\n"


def _quoted(text: str) -> str:
    """A protobuf text-format string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _config_signed(head: bytes) -> bool:
    """Whether keras_gen wrote this models.config (its first line says so)."""
    return head.startswith(CONFIG_HEADER.split(";")[0].encode())


def tflite(
    model: keras.Model,
    directory: str | os.PathLike,
    quantize: str = "none",
    uint8: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write DIR/model.tflite holding every signature but those in NOT_IN_TFLITE.

    Builtin ops only (no Flex). The batch size is free: resize the inputs at run time.
    `quantize`: "float16" halves the file, "dynamic_range" stores int8 weights.
    DIR is written whole, as a folder keras_gen owns: an existing one is replaced
    only if keras_gen wrote it or it is empty, unless `overwrite` (checked first).
    Builtins cannot fail a request, so validate inputs on the device: the file does
    not refuse empty batches, pixels outside [0, 1] or labels out of range, and a
    row with a NaN or infinite input comes out NaN (with `uint8`, unspecified).
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(
            f"quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}"
        )
    directory = _files.claim_folder(directory, overwrite)
    names = [name for name in model.serving_endpoints() if name not in NOT_IN_TFLITE]
    if not names:
        raise ValueError(
            f"{type(model).__name__} has no signature TFLite builtins can hold "
            f"({', '.join(model.serving_endpoints())} need Flex ops); "
            "export a SavedModel instead (--format saved_model)"
        )
    with tempfile.TemporaryDirectory() as scratch:
        saved = saved_model(model, Path(scratch) / "saved_model", uint8=uint8)
        flatbuffer = _converted(saved, names, quantize)
    with _files.atomic_directory(directory, overwrite) as staging:
        (staging / "model.tflite").write_bytes(flatbuffer)
    return directory / "model.tflite"


def _converted(saved: Path, names: list[str], quantize: str) -> bytes:
    """The TFLite flatbuffer of a SavedModel's signatures `names`, on builtin ops."""
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved), signature_keys=names
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def tflite_metrics(
    model: keras.Model, path: str | os.PathLike, quantize: str
) -> list[dict]:
    """The file size and the error against Keras of a TFLite file, as card metrics."""
    label = f"tflite ({quantize})"
    return [
        {"name": f"{label} file size, MB", "value": Path(path).stat().st_size / 2**20},
        {"name": f"{label} max abs error vs Keras", "value": tflite_error(model, path)},
    ]


def tflite_error(
    model: keras.Model, path: str | os.PathLike, num_samples: int = 16
) -> float:
    """Largest |TFLite - Keras| over every output of the first signature, on fixed inputs.

    Inputs: `num_samples` rows of latents ~ N(0, 1), images ~ U(0, 1), labels 0.
    Needs the LiteRT interpreter: pip install ai-edge-litert.
    """
    from ai_edge_litert.interpreter import Interpreter

    name, (function, signature) = next(iter(model.serving_endpoints().items()))
    inputs = {spec.name: _example_input(spec, num_samples) for spec in signature}
    runner = Interpreter(model_path=str(path)).get_signature_runner(name)
    found = runner(**inputs)
    expected = function(*inputs.values())
    return max(
        float(abs(found[key].astype("float64") - value.numpy()).max())
        for key, value in expected.items()
    )


def _example_input(spec, rows):
    shape = [rows if size is None else size for size in spec.shape]
    if spec.dtype.is_integer:  # num_samples and seed are `rows`, labels class 0
        value = rows if spec.name in ("num_samples", "seed") else 0
        return tf.fill(shape, tf.constant(value, spec.dtype)).numpy()
    if len(shape) == 4:
        return tf.random.stateless_uniform(shape, seed=(0, 0)).numpy()
    return tf.random.stateless_normal(shape, seed=(0, 0)).numpy()


def _checked(function, signature):
    """Refuse inputs of the wrong rank or size at the signature, naming the input.

    Saved signatures take any shape, so without this a wrong latent size would fail
    deep inside the graph with a message about matrix sizes. EnsureShape runs at
    serving time ("Shape of tensor latents [2,7] is not compatible with expected
    shape [?,16]"). The model's own checks refuse NaN; `_nan_rows` is what is left
    of them in TFLite.
    """

    def checked(*args):
        args = [
            tf.ensure_shape(v, s.shape, name=s.name) for v, s in zip(args, signature)
        ]
        return _nan_rows(args, signature, function(*args))

    return checked


def _nan_rows(args, signature, outputs):
    """Outputs with NaN in every row whose float inputs are not all finite.

    The model refuses such rows with an assertion, so a SavedModel never gets here
    with one; TFLite drops assertions, and its fused kernels would map NaN to a
    plausible image (a ReLU fused into a matmul gives 0 for NaN). This mask is
    built of builtin ops and keeps the answer NaN whatever the kernels do.
    """
    rows = [
        tf.reduce_all(
            tf.abs(value) <= value.dtype.max, axis=list(range(1, spec.shape.rank))
        )
        for value, spec in zip(args, signature)
        if spec.dtype.is_floating and spec.shape.rank and spec.shape[0] is None
    ]
    if not rows:
        return outputs
    finite = tf.reduce_all(tf.stack(rows), axis=0)

    def masked(value):
        if not value.dtype.is_floating:
            return value
        row = tf.reshape(finite, [-1] + [1] * (value.shape.rank - 1))
        return tf.where(row, value, tf.constant(float("nan"), value.dtype))

    return {name: masked(value) for name, value in outputs.items()}


def _with_image_dtype(function, uint8):
    if not uint8:
        return function

    def as_uint8(*args):
        outputs = function(*args)
        if "images" in outputs:
            outputs["images"] = tf.cast(tf.round(outputs["images"] * 255.0), tf.uint8)
        return outputs

    return as_uint8
