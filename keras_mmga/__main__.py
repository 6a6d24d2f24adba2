"""`python -m keras_mmga ...` is the `keras-mmga` command."""

import sys

from keras_mmga.cli import main

sys.exit(main())
