"""``python -m rlvr ...`` is ``rlvr ...`` (so ``torchrun -m rlvr`` / ``accelerate launch -m rlvr`` work)."""

import sys

from rlvr.cli import main

if __name__ == "__main__":
    sys.exit(main())
