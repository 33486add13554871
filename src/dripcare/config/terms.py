"""`config/sensitive_terms.txt`: what a discreet patient's SMS must never name (SPEC 4)."""

from __future__ import annotations

from pathlib import Path

from dripcare.config.clinic import ConfigError
from dripcare.domain.discreet import SensitiveTerms, parse_terms

TERMS_FILE = "sensitive_terms.txt"


def load_sensitive_terms(config_dir: Path) -> SensitiveTerms:
    """The clinic's list; an absent file is an empty list (`templates check` warns)."""
    path = Path(config_dir) / TERMS_FILE
    if not path.is_file():
        return SensitiveTerms([])
    try:
        return SensitiveTerms(parse_terms(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot be read as UTF-8 text ({error})") from None
