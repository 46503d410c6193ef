from grasp_bench.cli import main

main()
