"""A real SMTP server for tests: aiosmtpd's handler that keeps what it receives, or
answers MAIL, RCPT and DATA as a test scripts, and the stdlib parse of what it got."""

import asyncio
from email import message_from_bytes, policy


class Mailbox:
    """An aiosmtpd handler: keeps what it is given, or answers RCPT/DATA as a test scripts."""

    def __init__(self, rcpt_reply=None, data_delay=0.0, mail_reply=None):
        self.rcpt_reply, self.data_delay, self.mail_reply = rcpt_reply, data_delay, mail_reply
        self.received, self.sessions = [], []

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from, envelope.mail_options = address, mail_options
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        self.received.append(envelope)
        self.sessions.append(session)
        return "250 Message accepted for delivery"


def parse(envelope):
    """The received bytes as a mail program reads them (CRLF line ends become newlines)."""
    return message_from_bytes(envelope.content.replace(b"\r\n", b"\n"), policy=policy.default)
