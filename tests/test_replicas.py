import json
import subprocess
import sys
from pathlib import Path

import pytest
import tiny


@pytest.fixture(scope="module")
def replica_results():
    script = Path(__file__).with_name("replica_check.py")
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        # A guard against a hang, not a speed limit: every family, one after the
        # other, took 333 s beside the rest of the suite on a 2-core AMD EPYC.
        timeout=1800,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.mark.parametrize("name", tiny.FAMILIES)
def test_two_replicas_train_exactly_like_one_device(replica_results, name):
    result = replica_results[name]
    assert result["max_weight_change"] > 1e-3  # training really moved the weights
    assert result["max_weight_difference"] < 1e-5
    assert result["logs_one"].keys() == result["logs_two"].keys()
    for key, value in result["logs_one"].items():
        # The replicas' reduction sums in another order: with oneDNN off, WGAN-GP's
        # generator loss moved by 2e-5 relative. A loss scaled by the replica count
        # would be off by a factor of 2; abs 1e-5 for near-cancelling critic losses.
        assert result["logs_two"][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


def test_replicas_draw_different_noise_that_adds_up_to_one_devices(replica_results):
    assert replica_results["noise"] == {
        "shares_equal_whole": True,
        "replicas_differ": True,
    }
