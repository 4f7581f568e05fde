"""The feed HTTP service: FastAPI app (``app``), the backend protocol (``backend``), blending,
feed sessions, metrics and settings.

Kept empty on purpose: ``homefeed/config.py`` imports ``settings`` from here, and the app pulls
in FastAPI and the event SDK, which import the config.
"""
