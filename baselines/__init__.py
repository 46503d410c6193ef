"""Method plugins (GRASP and its baselines). Hydra `_target_` paths are the registry."""
