import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import pytest


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
