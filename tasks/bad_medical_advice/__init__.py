"""task=bad_medical_advice: its pinned upstream files (manifest.yaml) and README; built by grasp_bench.tasks.em_eval."""
