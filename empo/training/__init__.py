"""Training: the EmpoTrainer (TRL's GRPOTrainer plus the entropy filter), the rewards, the callbacks, the
run directory's record and lock, and what a run tells its user."""
