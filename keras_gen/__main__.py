"""The `keras-gen` command (also `python -m keras_gen`).

Run as the command, keras_gen's package init loads nothing heavy: keras_gen.cli reads
the flags first, then loads the command with TensorFlow's start-up logs hidden
(--verbose shows them).
"""

import sys

from keras_gen import cli


def main() -> int:
    """Entry point of the console script: the CLI, saying which device it runs on."""
    return cli.main(sys.argv[1:], command_line=True)


if __name__ == "__main__":
    sys.exit(main())
