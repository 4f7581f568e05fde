"""A synthetic world whose users react to the feeds they are shown.

``World`` is the population and catalogue; ``UserModel.react`` turns any ranked feed into the
events a user would emit (``react_batch`` for many sessions at once); ``iter_events`` and
``simulate`` run the world forward on the baseline feed, streaming events in time order.
"""

from homefeed.simulator.behavior import Behaviour, Chances, Feeds, UserModel, UserState
from homefeed.simulator.feeds import BaselineFeed
from homefeed.simulator.run import SimulationSummary, iter_events, simulate
from homefeed.simulator.world import World

__all__ = [
    "BaselineFeed",
    "Behaviour",
    "Chances",
    "Feeds",
    "SimulationSummary",
    "UserModel",
    "UserState",
    "World",
    "iter_events",
    "simulate",
]
