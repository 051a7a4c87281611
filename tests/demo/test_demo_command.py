"""The demo is an extra: a deployment without pymap starts, and `manage.py demo` without it says
which extra to install."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError


def test_the_apps_load_without_importing_pymap():
    code = (
        "import sys, django; django.setup(); "
        "print(sorted({m.partition('.')[0] for m in sys.modules} & {'pymap', 'pysasl', "
        "'proxyprotocol'}))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "jobsconsole.settings"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_demo_without_pymap_asks_for_the_demo_extra(monkeypatch):
    # As if pymap were not installed: every pymap module is unimportable, and the command and
    # the mail servers are imported afresh (monkeypatch puts the real modules back afterwards).
    for name in [m for m in sys.modules if m.partition(".")[0] == "pymap"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "pymap", None)
    for name in ("demo.mailservers", "demo.management.commands.demo"):
        package, _, attr = name.rpartition(".")
        monkeypatch.delitem(sys.modules, name, raising=False)
        monkeypatch.delattr(sys.modules[package], attr, raising=False)
    command = importlib.import_module("demo.management.commands.demo")

    with pytest.raises(CommandError, match=r"pip install '\.\[demo\]'"):
        call_command(command.Command())
