"""Clinic files changed under a running worker or web process (SPEC 3.2, 3.3): a good new
version is taken (and every patient planned again, in the worker); a wrong one is
refused, the last good version kept, and `status` shows the error. A campaign file that
goes missing while enrollments use it is wrong in the same way: nothing is cancelled.

Each file is judged on its own, so a broken campaign never holds back a fixed clinic.toml.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import sqlalchemy as sa

from dripcare.config.campaigns import campaign_files, load_campaign
from dripcare.config.clinic import ConfigError, load_clinic
from dripcare.config.terms import TERMS_FILE, load_sensitive_terms
from dripcare.domain.statuses import OPEN_ENROLLMENT
from dripcare.store import config_files
from dripcare.store.db import transaction
from dripcare.store.models import Enrollment

log = logging.getLogger("dripcare.config")
CLINIC_FILE = "clinic.toml"


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None


class ConfigWatch:
    def __init__(self, rt, config_dir: Path, messages_dir: Path, *, replan: bool = True):
        self.rt, self.config_dir, self.messages_dir, self.replans = rt, Path(config_dir), Path(messages_dir), replan
        self._seen = self._digests()
        self._errors: dict[str, str] = {}
        self._replan_owed = False

    def _digests(self) -> dict[str, str | None]:
        names = [CLINIC_FILE, TERMS_FILE] + [f"campaigns/{p.name}" for p in campaign_files(self.config_dir)]
        names += [f"campaigns/{c}.toml" for c in self.rt.campaigns]  # a vanished file counts as changed
        return {n: _digest(self.config_dir / n) for n in dict.fromkeys(names)}

    def record_all(self) -> None:
        """At start: the versions this process took, and what is missing."""
        self._seen = {}
        self.check()

    def check(self) -> bool:
        """Take what changed; True when the plan may have changed (clinic or campaigns)."""
        current = self._digests()
        if current == self._seen:
            return False
        errors: dict[str, str] = {}
        clinic = self._clinic(current, errors)
        campaigns = self._campaigns(clinic, current, errors)
        terms = self._terms(errors)
        changed = clinic is not self.rt.clinic or campaigns != self.rt.campaigns
        self.rt.use(clinic=clinic, campaigns=campaigns, terms=terms)
        self._replan_owed = self._replan_owed or changed  # still owed if the last attempt failed
        self._record(current, errors)
        if self._replan_owed and self.replans:
            from dripcare.app.messages import replan

            changes = replan(self.rt, by="worker")
            log.info("clinic files changed; planned again: %s", dict(changes.counts))
        # Only now: had the database refused the record or the replan, the next sweep tries again.
        self._seen, self._replan_owed = current, False
        return changed

    def _clinic(self, current, errors):
        if current.get(CLINIC_FILE) == self.rt.clinic.digest:
            return self.rt.clinic
        try:
            return load_clinic(self.config_dir)
        except ConfigError as error:
            errors[CLINIC_FILE] = str(error)
            return self.rt.clinic

    def _campaigns(self, clinic, current, errors) -> dict:
        campaigns = {}
        for path in campaign_files(self.config_dir):
            name, old = f"campaigns/{path.name}", self.rt.campaigns.get(path.stem)
            if old is not None and old.digest == current.get(name) and clinic is self.rt.clinic:
                campaigns[path.stem] = old
                continue
            try:
                campaigns[path.stem] = load_campaign(path, clinic, self.messages_dir)
            except ConfigError as error:
                errors[name] = str(error)
                if old is not None:
                    campaigns[path.stem] = old
        for campaign_id in self._in_use() - set(campaigns):
            path = self.config_dir / "campaigns" / f"{campaign_id}.toml"
            errors[f"campaigns/{campaign_id}.toml"] = (
                f"{path}: file not found, but enrollments use campaign {campaign_id!r}; put it back (a campaign "
                f"ends by withdrawing or completing its enrollments, never by removing its file)")
            if campaign_id in self.rt.campaigns:
                campaigns[campaign_id] = self.rt.campaigns[campaign_id]
        return campaigns

    def _in_use(self) -> set[str]:
        with transaction(self.rt.engine) as session:
            return set(session.execute(sa.select(Enrollment.campaign_id).where(
                Enrollment.status.in_(OPEN_ENROLLMENT)).distinct()).scalars())

    def _terms(self, errors):
        try:
            return load_sensitive_terms(self.config_dir)
        except ConfigError as error:
            errors[TERMS_FILE] = str(error)
            return self.rt.terms

    def _record(self, current, errors) -> None:
        for name, error in errors.items():
            if self._errors.get(name) != error:
                log.error("%s changed but is wrong; keeping the last good version: %s", name, error)
        now = self.rt.clock.now()
        with transaction(self.rt.engine) as session:
            for name in {**current, **errors}:
                config_files.record(session, name, current.get(name), errors.get(name), now)
            config_files.keep_only(session, set(current) | set(errors))
        self._errors = errors
