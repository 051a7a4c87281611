from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.ids import is_valid_id, new_id
from jobsconsole.env import parse_database_url

ROOT = Path(__file__).resolve().parent.parent


def test_ids_are_prefixed_and_sort_by_creation():
    ids = [new_id("job") for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(is_valid_id(i, "job") for i in ids)
    assert not is_valid_id(ids[0], "acc")
    assert not is_valid_id("job_123", "job")


def test_database_url_parsing(tmp_path):
    pg = parse_database_url(
        "postgres://u:p%40ss@db.example:6543/jobs?sslmode=require", base_dir=tmp_path
    )
    assert pg["ENGINE"] == "django.db.backends.postgresql"
    assert (pg["NAME"], pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"]) == (
        "jobs",
        "u",
        "p@ss",
        "db.example",
        "6543",
    )
    assert pg["OPTIONS"] == {"sslmode": "require"}
    assert parse_database_url("sqlite:///var/x.db", base_dir=tmp_path)["NAME"] == str(
        tmp_path / "var/x.db"
    )
    assert parse_database_url("sqlite:////abs/x.db", base_dir=tmp_path)["NAME"] == "/abs/x.db"


def test_refuses_to_start_without_secret_key_when_debug_is_off():
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SECRET_KEY", "DJANGO_DEBUG"}}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr
