"""The Hydra configs, shipped in the package as `grasp_bench.conf` (found through `grasp_bench.layout.CONF_DIR`)."""
