"""Print the README's TF Serving REST example, answered by the real exported preset.

The body goes through the exported `sample` signature exactly as the model server
decodes it (columnar "inputs" form), so the printed response is what curl would show.

    python tools/rest_example.py vae_mnist
"""

import json
import sys
import tempfile

import tensorflow as tf

from keras_gen import export, zoo


def main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else "vae_mnist"
    body = {"signature_name": "sample", "inputs": {"num_samples": 1, "seed": 0}}
    with tempfile.TemporaryDirectory() as scratch:
        directory = export.saved_model(zoo.load(name), f"{scratch}/1", uint8=True)
        signature = tf.saved_model.load(str(directory)).signatures[
            body["signature_name"]
        ]
        inputs = {
            "num_samples": tf.constant(body["inputs"]["num_samples"], tf.int32),
            "seed": tf.constant(body["inputs"]["seed"], tf.int64),
        }
        images = signature(**inputs)["images"].numpy()
    # One named output: the server answers {"outputs": value}. Row 14 crosses the digit.
    row = [pixel[0] for pixel in images[0, 14].tolist()]
    print(f"curl -s -X POST localhost:8501/v1/models/{name}:predict \\")
    print(f"  -d '{json.dumps(body)}' \\")
    print(
        "  | python3 -c 'import json, sys; print(json.load(sys.stdin)[\"outputs\"][0][14])'"
    )
    print([[pixel] for pixel in row])  # as the python3 -c above prints it
    return 0


if __name__ == "__main__":
    sys.exit(main())
