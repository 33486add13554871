"""Development transport: prints each message as a readable block; nothing reaches a patient."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from rich.console import Console, Group
from rich.panel import Panel
from rich.text import Text

from dripcare.delivery.transports.base import Outgoing, mask_contact

log = logging.getLogger("dripcare.transport")


class ConsoleTransport:
    name = "console"
    development = True

    def __init__(self, channel: str, console: Console | None = None):
        self.channel = channel
        self.console = console or Console()
        self._lock = threading.Lock()  # sends run in a pool: keep each block whole

    def send(self, outgoing: Outgoing) -> str:
        block = _block(outgoing)
        with self._lock:
            self.console.print(block)
        # The screen shows the real contact and text (it is a developer's screen); the log does not.
        log.info("console %s message %s to %s", self.channel, outgoing.message_id, mask_contact(outgoing.to))
        return f"console-{outgoing.message_id}"

    def lookup(self, outgoing: Outgoing, since: datetime) -> str | None:
        return None  # printing cannot be ambiguous


def _block(outgoing: Outgoing) -> Panel:
    # Text(...) rather than markup strings: a body with "[brackets]" must print as written.
    lines = [Text.assemble(("to: ", "bold"), outgoing.to)]
    if outgoing.subject is not None:
        lines.append(Text.assemble(("subject: ", "bold"), outgoing.subject))
    lines.append(Text(""))
    lines.append(Text(outgoing.body))
    title = f"{outgoing.channel.upper()} #{outgoing.message_id} at {outgoing.now:%Y-%m-%d %H:%M} UTC"
    return Panel(Group(*lines), title=Text(title), subtitle=Text("console transport: not sent"),
                 title_align="left", expand=False)
