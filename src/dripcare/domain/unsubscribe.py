"""Signed one-click unsubscribe tokens (SPEC 8 `/u/<token>`).

A token is `<patient id>.<mac>`: the MAC is HMAC-SHA256 over "v1:<patient id>", cut to
128 bits (ample against forgery, and the link stays short in a footer) and base64url
encoded. The "v1:" prefix leaves room for a new format without confusing the old one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

_MAC_BYTES = 16


def _mac(patient_id: int, key: str) -> str:
    digest = hmac.new(key.encode("utf-8"), f"v1:{patient_id}".encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_MAC_BYTES]).rstrip(b"=").decode("ascii")


def make_token(patient_id: int, key: str) -> str:
    if not key:
        raise ValueError("an unsubscribe token needs a secret key")
    return f"{int(patient_id)}.{_mac(int(patient_id), key)}"


def read_token(token: str, keys: list[str]) -> int | None:
    """The patient id a token was made for with one of `keys` (current first, then old), else None."""
    id_part, dot, mac = token.partition(".")
    # Only the exact form make_token writes: "007" must not pass as 7 with 7's MAC.
    if not dot or len(id_part) > 19 or not id_part.isascii() or not id_part.isdigit():
        return None
    if str(int(id_part)) != id_part:
        return None
    patient_id = int(id_part)
    given = mac.encode("utf-8", "surrogatepass")  # whatever a URL decoded to
    valid = False
    for key in keys:
        if key:  # every key is checked, so timing does not tell which one matched
            valid |= hmac.compare_digest(_mac(patient_id, key).encode("ascii"), given)
    return patient_id if valid else None


def unsubscribe_url(base_url: str, patient_id: int, key: str) -> str:
    return f"{base_url.rstrip('/')}/u/{make_token(patient_id, key)}"
