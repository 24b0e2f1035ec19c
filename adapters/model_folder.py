"""The folder name a model gets on disk and in object keys (its artifacts, its model servers).

A model name may be anything MLflow accepts, up to registry/catalog/domain.py `MAX_NAME` (256)
characters: spaces, dots, any letters. Not every such name is a safe path segment, and 256
characters, or fewer in a multi-byte script, are over the 255-byte limit of a file name. A name
that is a short safe segment (what every name used to be) is its own folder; any other gets
`n-` and a digest of the name. No valid name is refused here.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

#: A name kept as it is: letters, digits, `._@-`, at most 64 characters, not starting with `.`.
SAFE_SEGMENT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def model_folder(name: str) -> str:
    if SAFE_SEGMENT.fullmatch(name):
        return name
    return "n-" + hashlib.sha256(name.encode()).hexdigest()[:40]
