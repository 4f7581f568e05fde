"""The main job: a simulated world run through the whole pipeline, then online A/B experiments
in the simulator comparing feed strategies (``make demo``)."""
