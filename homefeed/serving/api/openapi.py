"""Export the feed API's OpenAPI document: ``python -m homefeed.serving.api.openapi [FILE]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from homefeed.serving.api.app import openapi_document


def export(path: Path | None = None) -> str:
    """The document as indented JSON; written to ``path`` when given."""
    text = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    if path is not None:
        path.write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":
    out = export(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    if len(sys.argv) == 1:
        sys.stdout.write(out)
