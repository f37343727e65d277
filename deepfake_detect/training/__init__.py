"""Set up and train: the plan, the run, iterative fine-tuning, MLflow, checkpoints, results."""
