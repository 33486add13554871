"""Twilio's OpenAPI description of the 2010-04-01 API, cut to the Messages paths.

The whole file comes from npm (`@twilio-alpha/mcp` ships twilio-oai's
`spec/json/twilio_api_v2010.json`; `make test` unpacks it into `.cache/twilio-oai`).
Prism loads the whole 1.9 MB description in about 25 s; the Messages paths and the
schemas they reach load in about 3 s, so the cut is made once per test session.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FULL_SPEC = REPO / ".cache/twilio-oai/twilio_api_v2010.json"
FETCH = "make .cache/twilio-oai/twilio_api_v2010.json"


def _refs(node, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/"):
            found.add(ref)
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def messages_only(spec: dict) -> dict:
    """The Messages paths, and every component they reach (transitively)."""
    paths = {p: v for p, v in spec["paths"].items() if "/Messages" in p}
    cut = {k: v for k, v in spec.items() if k not in ("paths", "components")}
    cut["paths"] = paths
    components = spec.get("components", {})
    wanted: set[str] = set()
    _refs(paths, wanted)
    kept: dict[str, dict] = {}
    while wanted:
        ref = wanted.pop()
        _, _, kind, name = ref.split("/", 3)
        if name in kept.setdefault(kind, {}) or name not in components.get(kind, {}):
            continue
        kept[kind][name] = components[kind][name]
        _refs(kept[kind][name], wanted)
    kept["securitySchemes"] = components.get("securitySchemes", {})
    cut["components"] = kept
    return cut


def write_messages_spec(target: Path, source: Path = FULL_SPEC) -> Path:
    target.write_text(json.dumps(messages_only(json.loads(source.read_text(encoding="utf-8")))), encoding="utf-8")
    return target
