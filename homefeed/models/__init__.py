"""Models: candidate sources, the ranker, the registry and offline evaluation.

``data.TrainingData`` is what every model fits on, whether it came from the lake or from an
imported dataset; ``sources.base.CandidateSource`` is the one interface every source obeys.
"""
