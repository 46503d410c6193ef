"""Per-method strength grids for Hydra multiruns.

Hydra's basic sweeper takes the cartesian product of its sweeps, so `method=a,b method.strength=...` would
give every method the same strengths. The `method_grid` sweeper (hydra_plugins/grasp_bench_sweeper) is
the basic sweeper plus one rule: a job that names no `method.strength` runs once per strength of its
method's own `grid` (conf/method/<name>.yaml), or once at the configured strength when the grid is empty
(`sft`, `base`). An explicit `method.strength=...` on the command line wins.

    grasp-bench sweep=tradeoff                                     # every method x its grid x seeds
    grasp-bench sweep=tradeoff "hydra.sweeper.params.method='caft,restore'"
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def expand_grids(jobs: Sequence[Sequence[str]], grid_of: Callable[[list[str]], Sequence[float]]) -> list[list[str]]:
    """Each job (a list of `key=value` overrides) once per strength of `grid_of(job)`, in grid order."""
    out = []
    for job in jobs:
        job = list(job)
        grid = [] if any(o.startswith("method.strength=") for o in job) else list(grid_of(job))
        out += [[*job, f"method.strength={s}"] for s in grid] if grid else [job]
    return out
