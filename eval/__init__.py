"""rlvr's evaluation harness: benchmark suites, generation, scoring, metrics and reports.

``python -m eval`` / ``rlvr eval`` evaluates a checkpoint on AIME 2024/2025, MATH-500, IFEval,
IFBench and a synthetic arithmetic suite from local files, with avg@n, unbiased pass@k,
maj@k (math-verify equivalence), IF strict/loose accuracy and length statistics.  Scoring is
the training reward code (``rewards.math``, ``rewards.ifeval``, ``rewards.ifbench``).  See
docs/eval.md.  Modules: ``metrics`` (formulas), ``suites`` (data, templates), ``scoring``,
``runner``, ``report``, ``oracle`` (self-checks), ``cli``.
"""

from eval.metrics import pass_at_k

__all__ = ["pass_at_k"]
