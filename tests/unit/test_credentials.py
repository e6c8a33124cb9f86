"""Credentials never go to git: they live in `.dvc/config.local` (`dvc remote modify
--local`), a git-ignored `.env`, or environment variables (docs/team.md#credentials)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

# `key = value` (DVC's INI config) or `key: value` (YAML) with a non-empty value
SECRET_KEYS = re.compile(
    r"^\s*(access_key_id|secret_access_key|session_token|password|passwd|account_key|"
    r"connection_string|sas_token|client_secret|gdrive_client_secret|token|"
    r"aws_access_key_id|aws_secret_access_key)\s*[=:]\s*\S", re.IGNORECASE | re.MULTILINE)
URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@")  # scheme://user:pw@
AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
CONFIG_FILES = re.compile(r"(^|/)(\.dvc/config|[^/]*\.(ya?ml|toml|cfg|ini|env|json)|Makefile|"
                          r"\.ci/[^/]+)$")


def find_credentials(text: str) -> list[str]:
    """The lines of ``text`` that look like they hold a credential."""
    found = []
    for pattern in (SECRET_KEYS, URL_PASSWORD, AWS_KEY_ID):
        found += [text[text.rfind("\n", 0, m.start()) + 1:].split("\n", 1)[0].strip()
                  for m in pattern.finditer(text)]
    return found


def test_the_scanner_finds_credentials_and_passes_clean_config():
    assert find_credentials("['remote \"s3\"']\n    secret_access_key = abc123\n")
    assert find_credentials("storage: postgresql://tuner:hunter2@db/optuna\n")
    assert find_credentials("key = AKIAABCDEFGHIJKLMNOP\n")
    clean = ("[core]\n    remote = shared\n['remote \"shared\"']\n    url = s3://bucket/x\n"
             "    endpointurl = https://minio.example.org\n"
             "storage: postgresql://tuner@db.example.org/optuna\n")
    assert find_credentials(clean) == []


def _tracked(repo_root: Path) -> list[str]:
    done = subprocess.run(["git", "ls-files"], cwd=repo_root, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip("not a git checkout")
    return done.stdout.splitlines()


def test_committed_config_holds_no_credentials(repo_root):
    files = [f for f in _tracked(repo_root) if CONFIG_FILES.search(f)]
    assert ".dvc/config" in files and "params.yaml" in files
    leaks = {f: hits for f in files if (repo_root / f).is_file()
             and (hits := find_credentials((repo_root / f).read_text(errors="replace")))}
    assert not leaks, f"credentials in committed files (move them to .dvc/config.local or " \
                      f"the environment): {leaks}"


@pytest.mark.parametrize("path", [".dvc/config.local", ".env", ".env.team"])
def test_local_credential_files_are_git_ignored(repo_root, path):
    _tracked(repo_root)
    ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=repo_root)
    assert ignored.returncode == 0, f"{path} is not git-ignored"
