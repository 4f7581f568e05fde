"""Real data into the pipeline, through the same SDK services use."""
