"""Log set-up for the worker and web processes: text or one JSON object per line.
Callers log message ids and masked contacts only, never a body (SPEC 10)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {"at": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
                    "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            document["error"] = self.formatException(record.exc_info)
        return json.dumps(document)


def configure(log_format: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # "skipped: maximum number of running instances reached" is a pass outlasting the
    # interval, which is by design (passes never overlap): not worth a line every interval.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # "Context impl ..." on every schema check
    # The twilio SDK logs request bodies (patients' texts and numbers) at DEBUG/INFO.
    logging.getLogger("twilio").setLevel(logging.WARNING)
    # urllib3's debug lines carry request URLs, and a Twilio lookup's URL holds the number.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def counts_text(counts) -> str:
    """`3 sent, 1 retried` from a Counter, in a stable order; empty when nothing happened."""
    return ", ".join(f"{n} {what}" for what, n in sorted(counts.items()) if n)
