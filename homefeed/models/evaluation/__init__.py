"""Offline evaluation: ranking metrics, the MovieLens 100K protocol with peers, time holdouts.

``metrics`` holds the measures (Microsoft Recommenders' definitions for the ranking ones);
``movielens`` runs homefeed and peer models on ML-100K under the Recommenders split;
``holdout`` evaluates on the last day of lake or simulated data.
"""
