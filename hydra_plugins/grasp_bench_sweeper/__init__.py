"""grasp-bench's Hydra sweeper: each method over its own strength grid (see grasp_bench/sweep.py)."""
