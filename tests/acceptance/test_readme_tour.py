"""The README's tour for clinic staff, run as a script (SPEC 2, 9): every shell block from the
tour to the operators' section, in order, in a fresh folder, with the real `dripcare` on the
PATH through `source .venv/bin/activate`, on today's date. Each command must exit 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tour_script() -> str:
    readme = (ROOT / "README.md").read_text()
    tour = readme[readme.index("## A tour for clinic staff"):readme.index("## For operators")]
    blocks = re.findall(r"```sh\n(.*?)```", tour, re.S)
    assert len(blocks) >= 5, "the tour's shell blocks"
    return "\n".join(blocks)


def test_the_readme_tour_runs_as_written(tmp_path):
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])  # `source .venv/bin/activate` from the clone
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIPCARE_", "DATABASE_URL", "TWILIO_",
                                                                     "SMTP_", "EMAIL_", "VIRTUAL_ENV"))}
    # The simulated clock set to now: the tour's dates are relative to today, as a reader's are.
    env.update(DRIPCARE_NOW=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), COLUMNS="80")
    script = "set -e -x\n" + tour_script()
    r = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"the tour stopped at the last command traced:\n{r.stderr[-3000:]}\n{r.stdout[-2000:]}"
    clinic = tmp_path / "my-clinic"
    assert (clinic / "config" / "clinic.toml").is_file() and (clinic / "dripcare.db").is_file()
    # The tour's changes said what they did, and the import and the rehearsal ran.
    assert "note: no email will go out for ketamine-iv" in " ".join(r.stdout.split())
    assert "error:" not in r.stderr
