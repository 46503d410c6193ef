"""Task packages (`grasp_bench.tasks.<name>`): each folder holds a task's builder, row-level metric
functions, data lists, manifest and README; its Hydra config is conf/task/<name>.yaml."""
