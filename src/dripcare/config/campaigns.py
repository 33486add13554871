"""Campaign files -> validated Campaign and Step values (SPEC 3.3)."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from pathlib import Path

from dripcare.config.clinic import Clinic, ConfigError, read_toml
from dripcare.domain.campaign import ANCHORS, Campaign, Step
from dripcare.domain.contacts import CHANNELS
from dripcare.domain.timing import parse_hhmm, parse_offset

TEMPLATE_SUFFIX = {"sms": ".sms.j2", "email": ".email.md.j2"}
_STEP_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def template_path(messages_dir: Path, campaign_id: str, step_id: str, channel: str) -> Path:
    return messages_dir / campaign_id / f"{step_id}{TEMPLATE_SUFFIX[channel]}"


def _channels(where: str, value, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    if not isinstance(value, list) or not value or any(c not in CHANNELS for c in value):
        raise ConfigError(f"{where}: channels must be a non-empty list of sms and email, got {value!r}")
    return tuple(dict.fromkeys(value))


def _step(where: str, raw: dict, default_channels: tuple[str, ...], clinic: Clinic) -> Step:
    anchor = raw.get("anchor")
    if anchor not in ANCHORS:
        raise ConfigError(f"{where}: anchor {anchor!r} is not one of {', '.join(ANCHORS)}")
    try:
        offset = parse_offset(str(raw.get("offset", "")))
    except ValueError as error:
        raise ConfigError(f"{where}: offset {error}") from None
    at = None
    if "at" in raw:
        try:
            at = parse_hhmm(str(raw["at"]))
        except ValueError as error:
            raise ConfigError(f"{where}: at {error}") from None
        if clinic.quiet_hours.contains_time(at):
            raise ConfigError(f"{where}: at {raw['at']!r} falls inside quiet hours "
                              f"({clinic.quiet_hours.start:%H:%M}-{clinic.quiet_hours.end:%H:%M}); pick a time outside them")
    priority = raw.get("priority", 50)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ConfigError(f"{where}: priority must be a whole number, got {priority!r}")
    expires = raw.get("expires")
    if expires is not None and expires != "session_start":
        try:
            parsed = parse_offset(str(expires))
        except ValueError:
            raise ConfigError(f"{where}: expires {expires!r} is not session_start or a duration like 12h") from None
        if parsed.negative or parsed.days:
            raise ConfigError(f"{where}: expires {expires!r} must be a positive duration in h/m, like 12h")
        expires = parsed.elapsed
        if expires <= timedelta(0):
            raise ConfigError(f"{where}: expires {raw['expires']!r} must be longer than zero")
    if expires == "session_start" and anchor == "enrollment":
        raise ConfigError(f"{where}: expires 'session_start' needs a session anchor, not 'enrollment'")
    when = raw.get("when", "not_cancelled")
    if when not in ("not_cancelled", "completed") or (when == "completed" and anchor == "enrollment"):
        raise ConfigError(f"{where}: when {when!r} must be not_cancelled or completed, on a session step")
    unknown = set(raw) - {"id", "anchor", "offset", "at", "channels", "priority", "expires", "when"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    return Step(id=raw["id"], anchor=anchor, offset=offset, at=at,
                channels=_channels(where, raw.get("channels"), default_channels),
                priority=priority, expires=expires, when=when)


def load_campaign(path: Path, clinic: Clinic, messages_dir: Path) -> Campaign:
    data = read_toml(path)
    campaign_id = data.get("id")
    if campaign_id != path.stem:
        raise ConfigError(f"{path}: id {campaign_id!r} must equal the file name {path.stem!r}")
    course_end = data.get("course_end", "last_booked")
    if course_end not in ("last_booked", "on_complete"):
        raise ConfigError(f"{path}: course_end {course_end!r} is not last_booked or on_complete")
    channels = _channels(str(path), data.get("channels", list(CHANNELS)), CHANNELS)
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ConfigError(f"{path}: no [[steps]]; a campaign needs at least one")
    steps, seen = [], set()
    for number, raw in enumerate(raw_steps, 1):
        step_id = raw.get("id")
        where = f"{path}: step {step_id!r}" if step_id else f"{path}: step #{number}"
        if not isinstance(step_id, str) or not _STEP_ID.match(step_id):
            raise ConfigError(f"{where}: id must be lowercase letters, digits, - or _")
        if step_id in seen:
            raise ConfigError(f"{where}: duplicate step id {step_id!r}")
        seen.add(step_id)
        step = _step(where, raw, channels, clinic)
        for channel in step.channels:
            template = template_path(messages_dir, campaign_id, step_id, channel)
            if not template.is_file():
                raise ConfigError(f"{where}: missing template {template} for channel {channel}")
        steps.append(step)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return Campaign(id=campaign_id, name=data.get("name", campaign_id), channels=channels,
                    course_end=course_end, steps=tuple(steps), digest=digest)


def campaign_files(config_dir: Path) -> list[Path]:
    return sorted((config_dir / "campaigns").glob("*.toml"))


def load_campaigns(config_dir: Path, clinic: Clinic, messages_dir: Path) -> dict[str, Campaign]:
    """Every campaign file; the first wrong one stops the command (SPEC 3.3)."""
    return {c.id: c for c in (load_campaign(p, clinic, messages_dir) for p in campaign_files(config_dir))}
