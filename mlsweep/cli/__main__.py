"""`python -m mlsweep.cli`: what a cluster's job runs (mlsweep.cluster.entrypoint)."""

from mlsweep.cli import main

main()
