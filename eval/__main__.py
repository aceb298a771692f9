"""``python -m eval``: the eval harness command line (same as ``rlvr eval``)."""

from eval.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
