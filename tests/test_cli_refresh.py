"""`mlinfra refresh` counts what `mlinfra status` lists: the resources it read, and the
components, which have nothing to read."""

from __future__ import annotations

import json


def test_refresh_counts_add_up_to_what_status_lists(journal_project):
    assert journal_project.cli("up", "--yes").returncode == 0
    listed = json.loads(journal_project.cli("status", "--json").stdout)["resources"]
    assert len(listed) == 4
    done = journal_project.cli("refresh")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "dev: 3 resources read, all as recorded (1 component has nothing to read)"
    )
    (journal_project.out / "f1.txt").write_text("edited")
    drifted = journal_project.cli("refresh")
    assert drifted.returncode == 1
    assert drifted.stdout.strip().splitlines()[-1] == (
        "dev: 3 resources read, 1 drifted; `mlinfra up --refresh` repairs them "
        "(1 component has nothing to read)"
    )


def test_a_provider_read_that_fails_names_the_resource_in_one_line(journal_project):
    assert journal_project.cli("up", "--yes").returncode == 0
    journal = journal_project.out / "f1.txt"
    journal.unlink()
    journal.mkdir()  # a directory where the provider reads a file
    failed = journal_project.cli("refresh")
    assert failed.returncode == 5, failed.stderr
    assert failed.stderr.strip().startswith("error: f1 (")
    assert "read failed: IsADirectoryError" in failed.stderr
    assert "unexpected error" not in failed.stderr
