"""Development transport: appends one JSON object per line to `sms.jsonl` / `email.jsonl`.

Demos and tests read these files back; nothing reaches a patient.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime
from pathlib import Path

from dripcare.delivery.transports.base import Outgoing, TransportError, email_headers, mask_contact

log = logging.getLogger("dripcare.transport")

# One lock per file, shared by every FileTransport in the process, so lines never interleave.
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path.resolve(), threading.Lock())


class FileTransport:
    name = "file"
    development = True

    def __init__(self, channel: str, outbox_dir: Path | str,
                 email_from: str = "dripcare@localhost", reply_to: str | None = None):
        self.channel = channel
        self.path = Path(outbox_dir) / f"{channel}.jsonl"
        self.email_from, self.reply_to = email_from, reply_to
        self._lock = _lock_for(self.path)

    def send(self, outgoing: Outgoing) -> str:
        line = json.dumps(self.record(outgoing), ensure_ascii=False) + "\n"
        try:
            self._append(line)
        except OSError as error:  # a full disk or a bad DRIPCARE_OUTBOX_DIR: try again later
            raise TransportError("retryable", "file", f"cannot append to {self.path}: {error.strerror}") from error
        log.info("file %s message %s to %s", self.channel, outgoing.message_id, mask_contact(outgoing.to))
        return f"file-{outgoing.message_id}"

    def _append(self, line: str) -> None:
        with self._lock:
            # Opened per send: a developer may delete or move the file between runs.
            try:
                out = open(self.path, "a", encoding="utf-8")
            except FileNotFoundError:  # the folder is not there (yet, or any more)
                self.path.parent.mkdir(parents=True, exist_ok=True)
                out = open(self.path, "a", encoding="utf-8")
            with out:
                out.write(line)

    def record(self, outgoing: Outgoing) -> dict:
        record = {"message_id": outgoing.message_id, "channel": outgoing.channel,
                  "to": outgoing.to, "body": outgoing.body}
        if outgoing.channel == "email":
            record["subject"] = outgoing.subject
            record["html"] = outgoing.html
            record["headers"] = email_headers(outgoing, self.email_from, self.reply_to)
        record["sent_at"] = outgoing.now.isoformat()
        return record

    def lookup(self, outgoing: Outgoing, since: datetime) -> str | None:
        return None  # an append either happened or raised
