"""Small checks on a `cli` fixture result, shared by the CLI-level test modules."""

from __future__ import annotations

import json


def ok(r):
    assert r.code == 0, (r.code, r.out, r.err)
    return r


def js(r):
    return json.loads(ok(r).out)
