"""How `keras-gen` starts: TensorFlow's own start-up logs hidden, one line on the device.

TensorFlow writes from C++ to stderr (file descriptor 2) while it is imported and
when it first looks for GPUs: the oneDNN notice, "Could not find cuda drivers",
the CPU-instructions notice and, on a machine without a GPU,
`E0000 ... failed call to cuInit: ... UNKNOWN ERROR (303)`, which reads as a
failure. Some come before absl's logging is initialised, where no setting filters
them (TF_CPP_MIN_LOG_LEVEL=3 leaves the first two; measured with TF 2.21), so
they are caught at the file descriptor: the import and the first device query run
with fd 2 pointed at a temporary file, shown only if they fail. Nothing here
imports TensorFlow at module level: the command reads its flags (and answers
--help) before TensorFlow loads.
"""

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

# TensorFlow's C++ logs after start-up: errors only. A value the user set wins.
QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2"}
# oneDNN's CPU kernels, which TensorFlow turns on by itself only on CPUs with AVX-512
# or AMX. On an AVX2 CPU (AMD EPYC) they trained dcgan_faces 2.7 times as fast as
# Eigen's (README, "Fast on CPUs"). A value the user set wins.
FAST_ENVIRONMENT = {"TF_ENABLE_ONEDNN_OPTS": "1"}
# The Python loggers of TensorFlow and absl (which Keras logs through): errors only.
QUIET_LOGGERS = ("tensorflow", "absl")

COMMAND = "keras-gen"
PACKAGE = "keras_gen"
# Python's own options that take the next word as their value.
OPTIONS_WITH_VALUES = ("-X", "-W", "--check-hash-based-pycs")


def running_as_command() -> bool:
    """Whether this process is `keras-gen` or `python [options] -m keras_gen`.

    While `-m` imports the package, sys.argv[0] is "-m"; sys.orig_argv keeps the
    interpreter's own arguments. A script taking "-m" as its argument is not the
    command: the search stops at the first word that is not an option.
    """
    if os.path.basename(sys.argv[0] if sys.argv else "") == COMMAND:
        return True
    words = iter(getattr(sys, "orig_argv", [])[1:])
    for word in words:
        if word == "-m":
            return next(words, None) == PACKAGE
        if word in OPTIONS_WITH_VALUES:
            next(words, None)
        elif not word.startswith("-"):
            return False
    return False


@contextlib.contextmanager
def tensorflow_start_quiet(hide: bool = True) -> Iterator[None]:
    """TensorFlow's start-up logs hidden for the block that first imports it, if
    `hide`: the environment keeps its later C++ logs to errors, and what it writes
    to file descriptor 2 meanwhile is shown only if the import fails."""
    if hide:
        set_unless_set(QUIET_ENVIRONMENT)
    with native_stderr_hidden(hide):
        yield


def set_unless_set(environment: dict[str, str]) -> None:
    """Set these environment variables, each unless the user has: theirs wins.
    TensorFlow reads them while it loads, so call this before."""
    for name, value in environment.items():
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def native_stderr_hidden(hide: bool = True) -> Iterator[None]:
    """What the block writes to file descriptor 2 (C++ logs included) goes to a
    temporary file, written out after all if the block raises: a failed import
    still explains itself."""
    if not hide:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to hide it from
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            _restore(saved)
            sink.seek(0)
            os.write(2, sink.read())
            raise
        _restore(saved)


def _restore(saved: int) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


@contextlib.contextmanager
def python_logs_hidden(hide: bool = True) -> Iterator[None]:
    """Python warnings, and TensorFlow's and absl's Python logs below ERROR, off for
    the block. keras_gen's own warnings still show."""
    if not hide:
        yield
        return
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.filterwarnings("default", module=r"keras_gen(\.|$)")
        for logger in loggers:
            logger.setLevel(max(logger.getEffectiveLevel(), logging.ERROR))
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def devices(hide_logs: bool = True) -> str:
    """What runs the model, e.g. "CPU (2 cores; no GPU found)" or the GPUs' names.

    The first device query is where TensorFlow tries CUDA (and logs cuInit's
    failure on a machine without a GPU), so it runs with those logs hidden. It lists
    physical devices only, so a strategy may still split them into logical ones.
    """
    import tensorflow as tf

    with native_stderr_hidden(hide_logs):
        gpus = tf.config.list_physical_devices("GPU")
        names = [
            tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in gpus
        ]
    cores = _cpu_cores()
    if not gpus:
        return f"CPU ({cores} cores; no GPU found)"
    plural = "s" if len(gpus) > 1 else ""
    return f"{len(gpus)} GPU{plural}: {', '.join(names)} (and {cores} CPU cores)"


def _cpu_cores() -> int:
    """The cores this process may use (its affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
