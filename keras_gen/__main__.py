"""The `keras-gen` command (also `python -m keras_gen`).

Importing keras_gen has already quieted TensorFlow's start-up when this process is
the console script (`_startup.quiet_when_command`); --verbose leaves it alone.
"""

import sys

from keras_gen import cli


def main() -> int:
    """Entry point of the console script: the CLI, saying which device it runs on."""
    return cli.main(sys.argv[1:], command_line=True)


if __name__ == "__main__":
    sys.exit(main())
