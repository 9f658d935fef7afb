"""``python -m exaug`` (also what ``torchrun -m exaug ...`` runs)."""

import sys

from .cli import main

sys.exit(main())
