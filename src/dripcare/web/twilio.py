"""Twilio's routes (SPEC 8): status callbacks and the replies patients text. Every request
is checked with the SDK's RequestValidator before anything is read or written; while
Twilio is not configured these routes answer 503 and change nothing."""

from __future__ import annotations

from flask import Blueprint, Response, request
from twilio.twiml.messaging_response import MessagingResponse

from dripcare.app import answers, callbacks, inbox
from dripcare.web.context import current

blueprint = Blueprint("twilio", __name__)


def _field(name: str, limit: int = 64) -> str | None:
    """A short form field (SIDs, statuses, codes): trimmed, and never longer than Twilio sends."""
    value = (request.form.get(name) or "").strip()[:limit]
    return value or None


@blueprint.post("/twilio/status")
def status_callback():
    web = current()
    refused = web.twilio_refusal()
    if refused is not None:
        return refused
    callbacks.status_callback(web.rt, request.args.get("m", ""), _field("MessageSid"), _field("MessageStatus") or "",
                              _field("ErrorCode", 10))
    return Response(status=204)


@blueprint.post("/twilio/inbound")
def inbound():
    web = current()
    refused = web.twilio_refusal()
    if refused is not None:
        return refused
    received = inbox.receive(web.rt, web.notices, request.form.get("From") or "", request.form.get("Body") or "",
                             _field("MessageSid"))
    return twiml(answers.answers_for(web.rt, received.reading, received.locale))


def twiml(texts: list[str]) -> Response:
    """Our answer as TwiML: one <Message> per text (none when keyword replies are off)."""
    response = MessagingResponse()
    for text in texts:
        response.message(text)
    return Response(str(response), mimetype="text/xml")
