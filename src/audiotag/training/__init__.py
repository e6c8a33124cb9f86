"""Training: seeding, the epoch loop, checkpoints."""
