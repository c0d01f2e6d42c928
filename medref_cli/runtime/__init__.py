"""What training, evaluation and prediction share: device, precision, batches, checkpoints, processes, metrics."""
