"""`hydra/sweeper=method_grid`: Hydra's basic sweeper, with each method swept over its own strength grid
(see grasp_bench.sweep). Hydra loads sweepers only from the `hydra_plugins` namespace package."""

from dataclasses import dataclass

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore


@dataclass
class MethodGridSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.grasp_bench_sweeper.method_grid_sweeper.MethodGridSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="method_grid", node=MethodGridSweeperConf,
                             provider="grasp_bench")


class MethodGridSweeper(BasicSweeper):
    @staticmethod
    def expand(jobs, grid_of):
        """The basic sweeper's jobs, each once per strength of its method's grid (the CLI validates these)."""
        from grasp_bench.sweep import expand_grids

        return expand_grids(jobs, grid_of)

    def split_arguments(self, overrides, max_batch_size):  # the base class calls it through self
        jobs = [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]

        def grid_of(job: list[str]) -> list[float]:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, job)
            return list(cfg.method.get("grid") or [])

        jobs = self.expand(jobs, grid_of)
        size = max_batch_size or len(jobs) or 1
        return [jobs[i:i + size] for i in range(0, len(jobs), size)]
