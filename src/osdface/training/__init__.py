"""Training: shared infrastructure (config, checkpoints, logging) and the two stages."""
