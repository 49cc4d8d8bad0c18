"""What `keras-gen` prints besides its results: no TensorFlow start-up logs, one line
naming the device, progress bars on a terminal only.

Two real runs of the command (fresh processes: TensorFlow logs while it is imported,
so only a new process shows whether the start-up is quiet) run while the in-process
tests do, to fit the time budget. Those check the terminal-or-pipe choice on a real
pseudo-terminal and a real pipe, and that progress changes no sample.
"""

import contextlib
import os
import pty
import re
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tiny

from keras_gen import _startup, cli, progress, zoo

# TensorFlow's C++ start-up lines: absl's "I0000 00:00:..." format, the notice that
# precedes absl's initialisation, and the words of the lines a newcomer sees.
TF_LOG = re.compile(
    r"^[IWEF]\d{4} \d\d:\d\d:[\d.]+ |absl::InitializeLog|cuInit|oneDNN|cuda drivers",
    re.MULTILINE,
)
DEVICE_LINE = re.compile(
    r"^keras-gen: running on (CPU \(\d+ cores; no GPU found\)|\d+ GPUs?: .+)\r?$",
    re.MULTILINE,
)
ROWS_BAR = re.compile(r"sampling  \[[=.]{20}\]  \d+/6 rows")  # tiny PixelCNN: 6 rows


@pytest.fixture(scope="module")
def preset(tmp_path_factory) -> Path:
    """A tiny PixelCNN preset folder: sampling it shows a bar of pixel rows."""
    model = tiny.pixelcnn()
    config = model.get_config()
    card = {
        "description": "tiny PixelCNN",
        "model": {
            "class": "PixelCNN",
            "config": {
                k: v
                for k, v in config.items()
                if k not in ("name", "trainable", "dtype")
            },
        },
        "data": {
            "dataset": "mnist",
            "split": "train",
            "description": "-",
            "terms": "-",
        },
        "training": {"epochs": 1, "batch_size": 4, "seed": 0, "compile": {}},
    }
    folder = tmp_path_factory.mktemp("presets") / "tiny_pixelcnn"
    return zoo.write(folder, model, card, samples=np.zeros((1, 6, 6, 1)))


def _command() -> list[str]:
    """The installed console script beside this Python, else `python -m keras_gen`."""
    script = Path(sys.executable).with_name("keras-gen")
    return [str(script)] if script.exists() else [sys.executable, "-m", "keras_gen"]


def _newcomer_environment() -> dict:
    """The environment of a user who set no TensorFlow variable (conftest sets one)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP_")}


def _read_all(fd: int) -> bytes:
    """Everything written to a pty's other end until it closes (EIO on Linux)."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture(scope="module", autouse=True)
def commands(preset, tmp_path_factory):
    """`keras-gen sample PRESET` with stderr on a terminal, and `keras-gen --verbose
    list` in a pipe: started before the first test, so the in-process tests run
    meanwhile."""
    folder = tmp_path_factory.mktemp("runs")
    sample = ["sample", str(preset), "-n", "2", "--seed", "3"]
    environment = _newcomer_environment()
    terminal, child_end = pty.openpty()
    started = {
        "terminal": subprocess.Popen(
            [*_command(), *sample, "-o", str(folder / "a.png")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=child_end,
            env=environment,
        ),
        "verbose": subprocess.Popen(
            [*_command(), "--verbose", "list"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
        ),
        "module": subprocess.Popen(
            [sys.executable, "-X", "utf8", "-m", "keras_gen", *sample[:-2], "-o"]
            + [str(folder / "b.png")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
        ),
    }
    os.close(child_end)
    chunks = []
    drain = threading.Thread(target=lambda: chunks.append(_read_all(terminal)))
    drain.start()
    yield started, drain, chunks
    for process in started.values():
        if process.poll() is None:
            process.kill()
    drain.join(timeout=60)
    os.close(terminal)


@pytest.fixture(scope="module")
def runs(commands) -> dict:
    """What the runs wrote to stderr, once all have ended."""
    started, drain, chunks = commands
    results = {}
    for name, process in started.items():
        out, err = process.communicate(timeout=300)
        if name == "terminal":
            drain.join(timeout=60)
            err = b"".join(chunks)
        results[name] = err.decode(errors="replace")
        assert process.returncode == 0, results[name][-3000:]
        assert ("vae_mnist" if name == "verbose" else "wrote 2 samples") in out.decode()
    return results


@pytest.fixture(scope="module")
def model(preset):
    """The preset's model, loaded once: only the first command traces its sampling."""
    return zoo.load(preset)


@contextlib.contextmanager
def _stderr_on(kind: str):
    """sys.stderr on a real pseudo-terminal or pipe; yields a function that returns
    what was written (drained by a thread, so a full buffer never blocks a write)."""
    reader, writer = pty.openpty() if kind == "terminal" else os.pipe()
    chunks = []
    drain = threading.Thread(target=lambda: chunks.append(_read_all(reader)))
    drain.start()
    written = []
    with open(writer, "w", buffering=1) as stream:  # closing it ends the drain
        saved, sys.stderr = sys.stderr, stream
        try:
            yield lambda: written[0]
        finally:
            sys.stderr = saved
    drain.join(timeout=30)
    os.close(reader)
    written.append(b"".join(chunks).decode(errors="replace"))


@pytest.mark.parametrize(
    "where, flags, shown",
    [("terminal", [], True), ("terminal", ["--quiet"], False), ("pipe", [], False)],
)
def test_progress_only_on_a_terminal_and_never_with_quiet(
    preset, model, monkeypatch, tmp_path, where, flags, shown
):
    monkeypatch.setattr(zoo, "load", lambda *args, **kwargs: model)
    argv = ["sample", str(preset), "-n", "2", "-o", str(tmp_path / "s.png"), *flags]
    with _stderr_on(where) as written:
        assert cli.main(argv) == 0
    assert bool(ROWS_BAR.search(written())) == shown, written()
    assert not progress.enabled()  # the command leaves the library quiet


def test_samples_with_progress_equal_those_without(model):
    # Two samples, as the commands above drew: the same shapes, no new tracing.
    quiet = np.asarray(model.generate(2, seed=5))
    with _stderr_on("pipe") as written, progress.showing(True):
        shown = np.asarray(model.generate(2, seed=5))
    np.testing.assert_array_equal(shown, quiet)
    assert "6/6 rows" in written()


def test_an_exported_signature_never_calls_python(model):
    # The exported `sample` traces the same `_sample` as `generate`: with progress
    # on, it must still take the pure graph path, or the SavedModel would need
    # this Python process to run.
    function, signature = model.serving_endpoints()["sample"]
    with _stderr_on("pipe"), progress.showing(True):
        graph = tf.function(function).get_concrete_function(*signature).graph
    ops = {node.op for node in graph.as_graph_def().node}
    ops |= {
        node.op
        for library in graph.as_graph_def().library.function
        for node in library.node_def
    }
    assert not ops & {"EagerPyFunc", "PyFunc", "PyFuncStateless"}, ops


@pytest.mark.parametrize(
    "argv0, orig_argv, command",
    [
        ("/venv/bin/keras-gen", ["python", "/venv/bin/keras-gen", "list"], True),
        ("-m", ["python", "-m", "keras_gen", "list"], True),
        ("-m", ["python", "-W", "error", "-X", "utf8", "-m", "keras_gen"], True),
        ("-m", ["python", "-m", "pytest"], False),
        ("run.py", ["python", "run.py", "-m", "keras_gen"], False),
    ],
)
def test_the_command_is_recognised_however_it_is_started(
    monkeypatch, argv0, orig_argv, command
):
    monkeypatch.setattr(sys, "argv", [argv0])
    monkeypatch.setattr(sys, "orig_argv", orig_argv)
    assert _startup.running_as_command() is command


# Runs the command's entry point as the console script does (argv[0] "keras-gen"),
# then says whether TensorFlow was imported.
ANSWER_WITHOUT_TENSORFLOW = """
import sys
sys.argv = ["keras-gen", *sys.argv[1:]]
from keras_gen.__main__ import main
try:
    code = main()
except SystemExit as exit:
    code = exit.code
print(code, "tensorflow" in sys.modules)
"""


@pytest.mark.parametrize(
    "argv, code, stderr",
    [
        (["--help"], 0, ""),
        (["sample"], 2, "the following arguments are required: preset"),
        (["evaluate", "x", "--measure", "fid"], 2, "unknown part 'fid'"),
    ],
)
def test_help_and_mistyped_flags_are_answered_before_tensorflow_loads(
    argv, code, stderr
):
    run = subprocess.run(
        [sys.executable, "-c", ANSWER_WITHOUT_TENSORFLOW, *argv],
        check=False,  # the exit code is asserted below, from the output
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.stdout.splitlines()[-1] == f"{code} False", run.stdout + run.stderr
    assert stderr in run.stderr


# Runs `keras-gen list`, then prints the hardware cards name and whether TensorFlow's
# oneDNN kernels are on.
ONEDNN_AFTER_THE_COMMAND = """
import sys
sys.argv = ["keras-gen", "list"]
from keras_gen.__main__ import main
try:
    main()
except SystemExit:
    pass
from tensorflow.python.util import _pywrap_util_port
from keras_gen import evaluation
print(evaluation.hardware())
print("oneDNN", _pywrap_util_port.IsMklEnabled())
"""


@pytest.mark.parametrize("setting, enabled", [(None, True), ("0", False)])
def test_the_command_turns_on_onednn_unless_the_user_turned_it_off(setting, enabled):
    environment = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        environment["TF_ENABLE_ONEDNN_OPTS"] = setting
    run = subprocess.run(
        [sys.executable, "-c", ONEDNN_AFTER_THE_COMMAND],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    *_, hardware, kernels = run.stdout.splitlines()
    assert kernels == f"oneDNN {enabled}", run.stdout + run.stderr
    # Cards name the kernels that ran, so wall times read with their setting.
    assert f"{'oneDNN' if enabled else 'Eigen'} kernels)" in hardware


def test_quiet_python_logs_hide_library_warnings_but_not_keras_gens():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _startup.python_logs_hidden():
            warnings.warn_explicit("from keras", UserWarning, "x.py", 1, "keras.x")
            warnings.warn_explicit("ours", UserWarning, "y.py", 1, "keras_gen.y")
        assert [str(w.message) for w in caught] == ["ours"]


# The real runs, last: by now they have run beside the tests above.


def test_the_command_starts_quietly_and_names_its_device(runs):
    assert not TF_LOG.search(runs["terminal"]), runs["terminal"]
    assert len(DEVICE_LINE.findall(runs["terminal"])) == 1, runs["terminal"]


def test_python_dash_m_starts_as_quietly(runs):
    assert not TF_LOG.search(runs["module"]), runs["module"]
    assert len(DEVICE_LINE.findall(runs["module"])) == 1, runs["module"]


def test_progress_shows_on_a_terminal(runs):
    assert ROWS_BAR.search(runs["terminal"]), runs["terminal"]
    assert "6/6 rows" in runs["terminal"]


def test_verbose_shows_tensorflows_logs(runs):
    assert TF_LOG.search(runs["verbose"]), runs["verbose"]
    assert not DEVICE_LINE.search(runs["verbose"])  # `list` runs no model


def test_a_reader_that_goes_away_ends_the_command_quietly(monkeypatch, capsys):
    reader, writer = os.pipe()
    os.close(reader)  # as `keras-gen list | head -1` once head has its line
    with open(writer, "w") as closed_pipe:
        monkeypatch.setattr(sys, "stdout", closed_pipe)
        assert cli.main(["list"]) == cli.CLOSED_PIPE_EXIT
        closed_pipe.write("more")  # now goes nowhere, and raises nothing
    assert capsys.readouterr().err == ""
