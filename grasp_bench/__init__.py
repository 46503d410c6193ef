"""grasp-bench: a reproducible benchmark of fine-tuning interventions against spurious generalisation."""

from grasp_bench.method import Method, RunContext, Untrained

__all__ = ["Method", "RunContext", "Untrained"]
__version__ = "0.1.0"
