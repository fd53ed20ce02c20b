"""Keeping secrets out of what people read: job errors and log lines.

Errors from HTTP libraries quote the URL they failed on, and a YouTube
resumable upload's session URL (its `upload_id` query) is as good as a
credential for that upload; tokens appear in headers quoted back by servers.
Everything the cutter stores as a job's `error`, and the YouTube uploader's
warnings, go through `redact` first.
"""

import re

# A stored error is shown to editors: it never carries a
# URL's query string (YouTube's upload session URL is a credential), a bearer
# token or a secret-looking key=value.
_SECRET_PATTERNS = (
    (re.compile(r"(?i)(bearer\s+)[^\s'\",]+"), r"\1[redacted]"),
    (re.compile(r"(/[^\s?'\"]*)\?[^\s'\")]+"), r"\1?[redacted]"),
    (re.compile(r"(?i)\b((?:access_|refresh_)?token|secret|password|upload_id|key)=[^\s&'\",]+"),
     r"\1=[redacted]"),
)  # fmt: skip


def redact(text):
    """`text` without URL query strings, bearer tokens or secret=value pairs."""
    if text is None:
        return None
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text
