"""A synthetic world whose users react to the feeds they are shown.

``World`` is the population and catalogue; ``UserModel.react`` turns any ranked feed into the
events a user would emit; ``iter_events``/``simulate`` run the world forward on a baseline feed.
"""

from homefeed.simulator.behavior import Behaviour, UserModel
from homefeed.simulator.feeds import BaselineFeed
from homefeed.simulator.run import SimulationSummary, iter_events, simulate
from homefeed.simulator.world import World

__all__ = [
    "BaselineFeed",
    "Behaviour",
    "SimulationSummary",
    "UserModel",
    "World",
    "iter_events",
    "simulate",
]
