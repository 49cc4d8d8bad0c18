import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_gen.models import base


@pytest.fixture(scope="module")
def replica_results():
    script = Path(__file__).with_name("replica_check.py")
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.mark.parametrize("name", ["DCGAN", "VAE"])
def test_two_replicas_train_exactly_like_one_device(replica_results, name):
    result = replica_results[name]
    assert result["max_weight_change"] > 1e-3  # training really moved the weights
    assert result["max_weight_difference"] < 1e-5
    assert result["logs_one"].keys() == result["logs_two"].keys()
    for key, value in result["logs_one"].items():
        assert result["logs_two"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_replica_noise_is_the_global_draw_shared_out():
    strategy = tf.distribute.get_strategy()  # one device: the whole global batch
    seed = base.step_seed(3, 7, 0)
    whole = base.replica_normal(8, [2], seed)
    np.testing.assert_array_equal(whole, tf.random.stateless_normal([8, 2], seed=seed))
    assert strategy.num_replicas_in_sync == 1
