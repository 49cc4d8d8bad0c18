import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The kernels `keras-gen` runs (keras_gen._startup.FAST_ENVIRONMENT), so that tests
# comparing the command with in-process results compare the same arithmetic.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import keras
import pytest

# Each worker imports TensorFlow and traces its own models: about 2 GB of memory.
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: one worker more than the cores, at most MAX_WORKERS.

    Workers wait on subprocesses, wheels and files: two kept 1.3 of two cores busy,
    and a third took the suite from 15.2 to 13.6 minutes there.
    """
    return max(1, min(MAX_WORKERS, (os.cpu_count() or 1) + 1))


# The files that take minutes (real data, subprocesses, wheels), longest first: started
# first, they do not leave one worker running alone at the end. Each file keeps the
# order of its own tests.
LONGEST_FILES = (
    "test_training.py",
    "test_replicas.py",
    "test_packaging.py",
    "test_export.py",
    "test_training_curve.py",
)


def pytest_collection_modifyitems(items) -> None:
    """Run LONGEST_FILES first, in that order; the other files after, as collected."""

    def rank(item) -> int:
        name = item.path.name
        return (
            LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)
        )

    items.sort(key=rank)


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(1234)


@pytest.fixture(autouse=True, scope="session")
def _feature_cache(tmp_path_factory):
    """Reference features computed by tests stay out of the user's ~/.cache."""
    saved = os.environ.get("KERAS_GEN_CACHE")
    os.environ["KERAS_GEN_CACHE"] = str(tmp_path_factory.mktemp("keras_gen_cache"))
    yield
    if saved is None:
        os.environ.pop("KERAS_GEN_CACHE", None)
    else:
        os.environ["KERAS_GEN_CACHE"] = saved


@pytest.fixture
def measured_models(monkeypatch):
    """evaluation.evaluate replaced by a stub reporting one metric: the list of the
    models it was given, to see what a command set on them before measuring."""
    from keras_gen import evaluation

    models = []

    def evaluate(model, *args, **kwargs):
        models.append(model)
        return {"metrics": [{"name": "FID (x)", "value": 1.0, "command": "c"}]}

    monkeypatch.setattr(evaluation, "evaluate", evaluate)
    return models
