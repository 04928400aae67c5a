"""`segment-export settings` never prints a password, a token or a key, whatever URL holds it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

SECRETS = {
    "SEGMENT_EXPORT_DATABASE_URL": ("postgresql+psycopg://app:DbPa55word@db.internal:5432/se",
                                    "DbPa55word"),
    "SEGMENT_EXPORT_REDIS_URL": ("redis://:R3disPa55@redis.internal:6379/0", "R3disPa55"),
    "SEGMENT_EXPORT_PROFILE_STORE": ("postgresql://reader:Pr0f1lePa55@lake.internal/profiles"
                                     "?schema=crm", "Pr0f1lePa55"),
    "SEGMENT_EXPORT_METRICS_TOKEN": ("metrics-T0ken-abcdef0123456789", "metrics-T0ken"),
    "SEGMENT_EXPORT_ADMIN_PASSWORD": ("Adm1nPa55word!", "Adm1nPa55word"),
}


def test_settings_redacts_url_passwords_and_hides_secrets(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGMENT_EXPORT_")}
    env.update({name: value for name, (value, _secret) in SECRETS.items()})
    env.update(SEGMENT_EXPORT_DATA_DIR=str(tmp_path / "data"), SEGMENT_EXPORT_SECRET_KEY=key)
    done = subprocess.run([sys.executable, "-m", "segment_export", "settings"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    for name, (_value, secret) in SECRETS.items():
        assert secret not in out, name
    assert key not in out
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "postgresql+psycopg://app:[REDACTED]@db.internal:5432/se" in \
        lines["SEGMENT_EXPORT_DATABASE_URL"]
    assert "redis://:[REDACTED]@redis.internal:6379/0" in lines["SEGMENT_EXPORT_REDIS_URL"]
    assert "postgresql://reader:[REDACTED]@lake.internal" in lines["SEGMENT_EXPORT_PROFILE_STORE"]
    for hidden in ("SEGMENT_EXPORT_SECRET_KEY", "SEGMENT_EXPORT_METRICS_TOKEN",
                   "SEGMENT_EXPORT_ADMIN_PASSWORD"):
        assert "(set, hidden)" in lines[hidden]
