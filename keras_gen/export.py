"""Deployable artifacts: a SavedModel with named signatures, TF Serving's layout, TFLite.

Each model names its endpoints (`serving_endpoints()`), e.g. GANs `generate` and
`sample`, VAEs `decode`, `encode`, `reconstruct`, `score` and `sample`, classifiers
`classify`. The first is also `serving_default`. The artifacts need TensorFlow only: no keras_gen, no custom objects.
"""

import os
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


def saved_model(
    model: keras.Model, directory: str | os.PathLike, uint8: bool = False
) -> Path:
    """Write a SavedModel with the model's named signatures; `uint8` gives 0..255 images."""
    directory = Path(directory)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (function, signature) in model.serving_endpoints().items():
        function = _checked(_with_image_dtype(function, uint8), signature)
        archive.add_endpoint(name, function, input_signature=signature)
    with _files.atomic_directory(directory) as staging:
        archive.write_out(str(staging), verbose=False)
    return directory


def serving(
    model: keras.Model,
    directory: str | os.PathLike,
    model_name: str,
    version: int | None = None,
    uint8: bool = False,
) -> Path:
    """TF Serving's layout, DIR/<model_name>/<version>/, and a models.config naming it.

    Without `version`, the next number after those present. An existing version is
    never overwritten.
    """
    base = Path(directory) / model_name
    existing = (
        sorted(int(p.name) for p in base.glob("*") if p.name.isdigit())
        if base.exists()
        else []
    )
    version = version if version is not None else (existing[-1] + 1 if existing else 1)
    if version in existing:
        raise ValueError(
            f"{base / str(version)} exists; TF Serving versions are immutable. "
            f"Pass another --version (the next free one is {existing[-1] + 1})."
        )
    saved_model(model, base / str(version), uint8=uint8)
    # The config lists every model in the folder, so exporting a second preset
    # beside the first serves both.
    served = sorted(
        folder
        for folder in Path(directory).iterdir()
        if any((v / "saved_model.pb").is_file() for v in folder.glob("[0-9]*"))
    )
    entries = "".join(
        "  config {\n"
        f'    name: "{folder.name}"\n'
        f'    base_path: "{folder.resolve()}"\n'
        '    model_platform: "tensorflow"\n'
        "    model_version_policy { all {} }\n"
        "  }\n"
        for folder in served
    )
    config = "model_config_list {\n" + entries + "}\n"
    _files.write_text(Path(directory) / "models.config", config)
    return base / str(version)


def tflite(
    model: keras.Model,
    directory: str | os.PathLike,
    quantize: str = "none",
    uint8: bool = False,
) -> Path:
    """Write DIR/model.tflite holding every signature but those in NOT_IN_TFLITE.

    Builtin ops only (no Flex). The batch size is free: resize the inputs at run time.
    `quantize`: "float16" halves the file, "dynamic_range" stores int8 weights.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(
            f"quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}"
        )
    directory = Path(directory)
    with tempfile.TemporaryDirectory() as scratch:
        saved = saved_model(model, Path(scratch) / "saved_model", uint8=uint8)
        names = [
            name for name in model.serving_endpoints() if name not in NOT_IN_TFLITE
        ]
        if not names:
            raise ValueError(
                f"{type(model).__name__} has no signature TFLite builtins can hold "
                f"({', '.join(model.serving_endpoints())} need Flex ops); "
                "export a SavedModel instead (--format saved_model)"
            )
        converter = tf.lite.TFLiteConverter.from_saved_model(
            str(saved), signature_keys=names
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        flatbuffer = converter.convert()
    directory.mkdir(parents=True, exist_ok=True)
    with _files.atomic_path(directory / "model.tflite") as temporary:
        temporary.write_bytes(flatbuffer)
    return directory / "model.tflite"


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
    shape [?,16]").
    """

    def checked(*args):
        return function(
            *(tf.ensure_shape(v, s.shape, name=s.name) for v, s in zip(args, signature))
        )

    return checked


def _with_image_dtype(function, uint8):
    if not uint8:
        return function

    def as_uint8(*args):
        outputs = function(*args)
        if "images" in outputs:
            outputs["images"] = tf.cast(tf.round(outputs["images"] * 255.0), tf.uint8)
        return outputs

    return as_uint8
