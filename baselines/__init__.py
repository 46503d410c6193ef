"""Method plugins (GRASP and its baselines), installed as `grasp_bench.baselines`; the `_target_` paths of
conf/method/*.yaml are the registry."""
