"""Request and response bodies of the feed API: explicit, so the OpenAPI document is exact."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_ID = 2**63 - 1


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorResponse(Body):
    error: str = Field(description="Error code, e.g. unknown_user, invalid_parameter.")
    message: str = Field(description="What went wrong, for humans.")
    field: str | None = Field(None, description="The parameter or body field at fault.")
    value: str | None = Field(None, description="The offending value (repr, truncated).")


class FeedItem(Body):
    pin_id: int = Field(ge=0, le=MAX_ID)
    position: int = Field(ge=0, description="Position in the whole feed session, from 0.")
    source: str = Field(description="Candidate source that proposed the pin.")
    score: float = Field(description="Ranking score; higher ranked first before blending.")
    topics: list[str] = Field(description="The pin's primary topic (empty if unknown).")


class FeedResponse(Body):
    request_id: str = Field(description="Id of this page; impressions carry it.")
    items: list[FeedItem]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null: end.")
    model_version: str


class EventBatch(Body):
    events: list[Any] = Field(description="Events as JSON objects (see the event schemas).")


class EventRejection(Body):
    index: int = Field(ge=0, description="Position of the event in the batch.")
    reason: str = Field(description="missing_field, invalid_field, unknown_type, ...")
    message: str
    field: str | None = None
    value: str | None = None


class EventsResponse(Body):
    accepted: int = Field(ge=0)
    rejected: list[EventRejection] = Field(description="Dead-lettered events, by batch index.")


class PinResponse(Body):
    pin_id: int = Field(ge=0, le=MAX_ID)
    creator_id: int | None
    created_ms: int
    topics: list[str]


class UserResponse(Body):
    user_id: int = Field(ge=0, le=MAX_ID)
    engagements: int = Field(ge=0)
    saves: int = Field(ge=0)
    hides: int = Field(ge=0)
    following: int = Field(ge=0)
    top_topics: list[str]
    cold_start: bool = Field(description="No positive history yet: the feed is trending.")


class HealthResponse(Body):
    status: str
    model_version: str
    sessions: int = Field(ge=0)
