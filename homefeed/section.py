"""The base of every config section: unknown keys rejected, assignments validated.

Its own module, free of homefeed imports, so that settings classes living beside their code
(serving, experiments, deploy) and ``homefeed.config``, which mounts them, share it without an
import cycle.
"""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
