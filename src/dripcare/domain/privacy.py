"""What may reach a log line (SPEC 10): contacts masked, never a body."""

from __future__ import annotations


def mask_contact(value: str | None) -> str:
    """A phone or email fit for a log line: "+1******0123", "s***@example.org"."""
    value = (value or "").strip()
    if "@" in value:
        local, _, domain = value.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if len(value) >= 8:
        return value[:2] + "*" * (len(value) - 6) + value[-4:]
    # Too short to show any of it without showing most of it.
    return "*" * max(len(value) - 2, 0) + value[-2:]
