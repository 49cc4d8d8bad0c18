"""Deployable artifacts: a SavedModel with named signatures, TF Serving's layout,
TFLite, ONNX, and a static web page that samples in the browser.

Each model names its endpoints (`serving_endpoints()`), e.g. GANs `generate` and
`sample`, VAEs `decode`, `encode`, `reconstruct`, `score` and `sample`, classifiers
`classify`. The first is also `serving_default`. The artifacts need TensorFlow
only: no keras_gen, no custom objects.

Bad requests are refused at the signature as the Keras methods refuse them: wrong
shapes, an empty batch, NaN or infinite latents, pixels outside [0, 1], labels out
of range. TFLite has no builtin op that fails a request, so its converter drops
those checks (shapes aside); there, a row with a NaN or infinite input comes out
NaN rather than as a plausible image. ONNX files (tf2onnx, from the SavedModel)
behave like TFLite's. Outputs are checked before any tracing, and
nothing keras_gen did not write is replaced without `overwrite=True`.
"""

import contextlib
import numbers
import os
import re
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_gen import _files, progress
from keras_gen._choices import QUANTIZATIONS
from keras_gen._version import __version__
from keras_gen.models import base

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
    with (
        _files.atomic_directory(directory, overwrite) as staging,
        progress.stage("writing the SavedModel"),
    ):
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
    Transposed convolutions are written as ordinary ones (`_phase_convolutions`), so
    that LiteRT runs them on its XNNPACK kernels at any batch size.
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
        with _transposed_convolutions_as_phases(model):
            saved = saved_model(model, Path(scratch) / "saved_model", uint8=uint8)
        flatbuffer = _converted(saved, names, quantize)
    with _files.atomic_directory(directory, overwrite) as staging:
        (staging / "model.tflite").write_bytes(flatbuffer)
    return directory / "model.tflite"


@contextlib.contextmanager
def _transposed_convolutions_as_phases(model: keras.Model):
    """Trace every 'same' Conv2DTranspose of `model` as `_phase_convolutions` while
    this lasts: an equivalent computation LiteRT runs on XNNPACK at any batch size.

    TFLite's TRANSPOSE_CONV takes its output shape as a tensor, which a free batch
    size keeps from being a constant, and XNNPACK takes only constant ones: the op
    then runs on TFLite's own kernel, about three times slower than XNNPACK's
    convolutions doing the same work (dcgan_faces, layer by layer). Only the traced
    graph changes: weights, the Keras model and its other exports stay as they are.
    """
    lowered = [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.Conv2DTranspose) and _phase_taps(layer)
    ]
    for layer in lowered:
        # object.__setattr__: a plain attribute, not one Keras tracks or saves.
        object.__setattr__(layer, "call", _phase_call(layer))
    try:
        yield
    finally:
        for layer in lowered:
            object.__delattr__(layer, "call")


def _phase_taps(layer) -> list | None:
    """Per spatial axis, the kernel taps of each output phase r (output rows
    r, r + s, r + 2s, ...), in input order, and the input offset of the first; None
    for a layer `_phase_convolutions` does not cover.

    conv2d_transpose is the gradient of a stride-s convolution padded by p = (k - s)
    // 2 ('same'): output row s * q + r sums x[q + d] * w[t] over the taps t = (r + p)
    mod s + s * m, m = 0, 1, ..., at input offsets d = (r + p) // s - m.
    """
    if (
        layer.padding != "same"
        or layer.data_format != "channels_last"
        or layer.output_padding is not None
        or tuple(layer.dilation_rate) != (1, 1)
        or len(set(layer.strides)) != 1
        or min(layer.kernel_size) < layer.strides[0]
    ):
        return None
    stride = layer.strides[0]
    axes = []
    for size in layer.kernel_size:
        pad = (size - stride) // 2
        phases = []
        for phase in range(stride):
            taps = list(range((phase + pad) % stride, size, stride))
            first = (phase + pad) // stride - (len(taps) - 1)
            phases.append((taps[::-1], first))  # increasing offsets: last tap first
        axes.append(phases)
    return axes


def _phase_call(layer):
    """The layer's call as `_phase_convolutions`, then its bias and activation."""

    def call(inputs):
        if None in inputs.shape[1:]:  # rows and columns must be known to slice them
            return type(layer).call(layer, inputs)
        outputs = _phase_convolutions(layer, inputs)
        if layer.use_bias:
            outputs = outputs + layer.bias
        return layer.activation(outputs) if layer.activation else outputs

    return call


# A phase convolution with fewer output channels than this fills a fraction of each of
# XNNPACK's vector tiles (16 floats on AVX-512): there the phases run as one convolution
# with stride**2 times the outputs, zero taps included (measured faster, e.g. for
# DCGAN's last layer, 3 channels).
NARROW_OUTPUT = 16


def _phase_convolutions(layer, inputs) -> tf.Tensor:
    """A 'same' Conv2DTranspose as stride**2 VALID convolutions, one per output phase,
    interleaved by depth_to_space: builtins XNNPACK runs at any batch size.

    Each phase convolves the input with the kernel taps that reach it (2x2 of a 4x4
    kernel at stride 2), so unlike a convolution of the zero-stuffed input, nothing
    is multiplied by an inserted zero.
    """
    axes = _phase_taps(layer)
    pad = [
        (
            max(0, -min(first for _, first in axis)),
            max(0, max(first + len(taps) - 1 for taps, first in axis)),
        )
        for axis in axes
    ]
    padded = tf.pad(inputs, [[0, 0], *pad, [0, 0]])
    # (k, k, out, in) -> (k, k, in, out): a transposed convolution's kernel is stored
    # as the convolution it is the gradient of reads it.
    kernel = tf.transpose(layer.kernel, [0, 1, 3, 2])
    phases = [
        (
            tf.gather(tf.gather(kernel, row_taps, axis=0), column_taps, axis=1),
            (row, column),
        )
        for row_taps, row in axes[0]
        for column_taps, column in axes[1]
    ]
    if layer.filters < NARROW_OUTPUT:
        phases = [_merged(phases)]
    outputs = []
    for taps, firsts in phases:
        start = [low + first for (low, _), first in zip(pad, firsts)]
        end = [
            s + size + k - 1 for s, size, k in zip(start, inputs.shape[1:3], taps.shape)
        ]
        window = padded[:, start[0] : end[0], start[1] : end[1]]
        outputs.append(tf.nn.conv2d(window, taps, 1, "VALID"))
    outputs = tf.concat(outputs, axis=-1)
    stride = layer.strides[0]
    return outputs if stride == 1 else tf.nn.depth_to_space(outputs, stride)


def _merged(phases: list) -> tuple:
    """The phases' kernels as one (kernel, first offsets): each zero-padded to span
    every phase's input offsets, concatenated along the outputs in depth_to_space's
    order (row phase, column phase, channel)."""
    low = [min(firsts[axis] for _, firsts in phases) for axis in (0, 1)]
    high = [max(f[axis] + k.shape[axis] for k, f in phases) for axis in (0, 1)]
    kernels = [
        tf.pad(
            taps,
            [
                [f - lo, hi - f - size]
                for f, lo, hi, size in zip(firsts, low, high, taps.shape)
            ]
            + [[0, 0], [0, 0]],
        )
        for taps, firsts in phases
    ]
    return tf.concat(kernels, axis=-1), tuple(low)


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
    with progress.stage("converting to TFLite"):
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
    if spec.dtype.is_integer:  # num_samples, seed (and steps) are `rows`, labels 0
        value = rows if spec.name in ("num_samples", "seed", "steps") else 0
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


# ONNX files: one per signature, opset 17 (onnxruntime >= 1.13 and onnxruntime-web
# run it; tf2onnx 1.17 converts up to 18). ONNX, like TFLite builtins, has no
# TensorFlow stateless random ops (its RandomNormal would not give Keras's samples), so
# the signatures of NOT_IN_TFLITE are left out here too.
ONNX_OPSET = 17
ONNX_EXTRA = "pip install 'keras-gen[onnx]' (tf2onnx and onnxruntime)"


class MissingDependencyError(ImportError, ValueError):
    """An optional dependency of one export format is not installed.

    An ImportError for Python callers; a ValueError too, so the CLI reports it in one
    line like any other user error.
    """


def _optional(module: str, purpose: str):
    """Import `module` (a dependency of the `onnx` extra) or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"{purpose} needs {module}, which is not installed: {ONNX_EXTRA}",
            name=module,
        ) from error


def onnx(
    model: keras.Model,
    directory: str | os.PathLike,
    signatures: list[str] | None = None,
    uint8: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write DIR/<signature>.onnx for every signature but those in NOT_IN_TFLITE.

    tf2onnx converts the SavedModel `saved_model` writes, one signature per file
    (TF2 SavedModels convert one signature at a time, and an ONNX graph has one
    entry point); `signatures` picks some. Inputs and outputs keep the signature's
    names, except that an output named like an input gets "_out" appended (VAE
    `reconstruct`: images -> images_out), as ONNX names must be unique. The batch
    size is free. Like TFLite, ONNX has no op that fails a request: a row with a NaN
    or infinite input comes out NaN. DIR is replaced whole only if keras_gen wrote
    it or it is empty, unless `overwrite` (checked first). Returns DIR. Needs the
    `onnx` extra.
    """
    directory = _files.claim_folder(directory, overwrite)
    names = _onnx_signatures(model, signatures)
    _optional("tf2onnx", "ONNX export")
    with tempfile.TemporaryDirectory() as scratch:
        saved = saved_model(model, Path(scratch) / "saved_model", uint8=uint8)
        models = _onnx_models(saved, names)
    with _files.atomic_directory(directory, overwrite) as staging:
        for name, content in models.items():
            (staging / f"{name}.onnx").write_bytes(content)
    return directory


def _onnx_signatures(model, chosen: list[str] | None) -> list[str]:
    """`chosen`, or every signature but NOT_IN_TFLITE's; what cannot be, refused."""
    endpoints = list(model.serving_endpoints())
    available = [name for name in endpoints if name not in NOT_IN_TFLITE]
    if chosen is None and not available:
        raise ValueError(
            f"{type(model).__name__} has no signature for ONNX: its signatures "
            f"({', '.join(endpoints)}) are those left out of ONNX and TFLite files "
            f"({', '.join(NOT_IN_TFLITE)}, which draw noise in most families); "
            "export a SavedModel instead (--format saved_model)"
        )
    for name in chosen or ():
        if name not in available:
            raise ValueError(
                f"{type(model).__name__} has no signature {name!r} for ONNX; "
                f"it has {', '.join(available) or 'none'}"
            )
    return list(chosen or available)


def _onnx_models(saved: Path, names: list[str]) -> dict[str, bytes]:
    """ONNX models of a SavedModel's signatures `names`, by name, through tf2onnx.

    The SavedModel is loaded once and each signature converted by tf2onnx's
    `from_function`, with its outputs renamed where ONNX needs it (`onnx_output_name`).
    """
    import logging

    from tf2onnx import convert

    loaded = tf.saved_model.load(str(saved))
    # tf2onnx logs every graph rewrite it tries; its errors still raise.
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with progress.stage("converting to ONNX"):
            return {
                name: _onnx_model(convert, loaded.signatures[name]) for name in names
            }
    finally:
        logger.setLevel(level)


def _onnx_model(convert, signature) -> bytes:
    """One loaded signature as a serialized ONNX model (inputs in name order)."""
    _, specs = signature.structured_input_signature
    specs = [specs[key] for key in sorted(specs)]
    names = [spec.name for spec in specs]

    @tf.function(autograph=False)
    def renamed(*inputs):
        outputs = signature(**dict(zip(names, inputs)))
        return {onnx_output_name(key, specs): value for key, value in outputs.items()}

    proto, _ = convert.from_function(renamed, input_signature=specs, opset=ONNX_OPSET)
    return proto.SerializeToString()


def onnx_output_name(output: str, signature: list) -> str:
    """The ONNX name of a signature's output (see `onnx`: "_out" if it names an input)."""
    return output + "_out" if output in {spec.name for spec in signature} else output


def onnx_metrics(model: keras.Model, directory: str | os.PathLike) -> list[dict]:
    """The size of an ONNX folder's files and their error against Keras, as card metrics."""
    files = sorted(Path(directory).glob("*.onnx"))
    return [
        {
            "name": "onnx file size, MB",
            "value": sum(file.stat().st_size for file in files) / 2**20,
        },
        {"name": "onnx max abs error vs Keras", "value": onnx_error(model, directory)},
    ]


def onnx_error(
    model: keras.Model, directory: str | os.PathLike, num_samples: int = 16
) -> float:
    """Largest |onnxruntime - Keras| over every output of every ONNX file in DIR.

    Inputs as `tflite_error`'s; uint8 images are compared with Keras's rounded to
    0..255. Runs on onnxruntime's CPU provider.
    """
    runtime = _optional("onnxruntime", "Checking ONNX files")
    errors = []
    for name, (function, signature) in model.serving_endpoints().items():
        path = Path(directory) / f"{name}.onnx"
        if not path.is_file():
            continue
        inputs = {spec.name: _example_input(spec, num_samples) for spec in signature}
        session = runtime.InferenceSession(
            str(path), providers=["CPUExecutionProvider"]
        )
        found = dict(
            zip([o.name for o in session.get_outputs()], session.run(None, inputs))
        )
        tensors = [tf.constant(value) for value in inputs.values()]
        for key, expected in function(*tensors).items():
            output = found[onnx_output_name(key, signature)]
            errors.append(_largest_difference(output, expected.numpy()))
    if not errors:
        raise ValueError(f"{directory} holds no ONNX file of a {type(model).__name__}")
    return max(errors)


def _largest_difference(found: np.ndarray, expected: np.ndarray) -> float:
    """max |found - expected|; uint8 images against Keras's rounded to 0..255."""
    expected = expected.astype("float64")
    if found.dtype == np.uint8:
        expected = np.round(expected * 255.0)
    return float(np.abs(found.astype("float64") - expected).max())


# The web page's grid: samples per seed, and sliders over the first latent dimensions.
WEB_GRID = 16
WEB_SLIDERS = 6


def web(
    model: keras.Model,
    directory: str | os.PathLike,
    title: str = "keras_gen",
    overwrite: bool = False,
    cache: str | os.PathLike | None = None,
) -> Path:
    """Write a static page that samples from the model in a web browser.

    DIR gets index.html, keras_gen.js, the model's latent decode signature as ONNX
    (<signature>.onnx: latents [, labels] -> images) and onnxruntime-web's
    WebAssembly files (see `keras_gen.web`, cached in `cache`). Serve it from any
    static server (`python -m http.server -d DIR`): it runs on one thread, so it
    needs no cross-origin isolation. The page draws latents from a seed with its own
    documented generator (keras_gen.js), not TensorFlow's, so its samples are not
    those of `generate(seed=...)`. DIR is replaced whole only if keras_gen wrote it
    or it is empty, unless `overwrite` (checked first). Returns DIR.
    """
    from keras_gen import web as page

    directory = _files.claim_folder(directory, overwrite)
    name, signature = _latent_signature(model)
    _optional("tf2onnx", "The web page's ONNX model")
    runtime = page.runtime(cache)
    with tempfile.TemporaryDirectory() as scratch:
        saved = saved_model(model, Path(scratch) / "saved_model")
        onnx_model = _onnx_models(saved, [name])[name]
    config = {
        "title": title,
        "signature": name,
        "model": f"{name}.onnx",
        "output": onnx_output_name("images", signature),
        "latent_dim": int(signature[0].shape[-1]),
        "conditions": model.conditions if model.can(base.CONDITIONS) else {},
        "grid": WEB_GRID,
        "sliders": min(WEB_SLIDERS, int(signature[0].shape[-1])),
        "keras_gen": __version__,
        "onnxruntime_web": page.ORT_VERSION,
    }
    with _files.atomic_directory(directory, overwrite) as staging:
        for file, content in page.page(config).items():
            (staging / file).write_bytes(content)
        (staging / config["model"]).write_bytes(onnx_model)
        for file, path in runtime.items():
            shutil.copyfile(path, staging / file)
    return directory


def _latent_signature(model) -> tuple[str, list]:
    """(name, input signature) of the model's decode: latents [, labels] -> images."""
    endpoints = model.serving_endpoints()
    for name, (_, signature) in endpoints.items():
        inputs = [spec.name for spec in signature]
        if inputs[0] == "latents" and set(inputs) <= {"latents", "labels"}:
            return name, signature
    raise ValueError(
        f"{type(model).__name__} has no latent decode signature (latents -> images) "
        f"for the web page; its signatures are {', '.join(endpoints)}. The page "
        "samples GANs and VAEs (e.g. dcgan_faces, vae_mnist, cvae_faces)."
    )
