"""mtrec: multi-task transfer learning for recommenders, as an MLOps workflow."""

__version__ = "0.1.0"
