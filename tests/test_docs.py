"""The documentation: the generated spec reference lists every field of `campaign schema`, the
CLI reference every command, README stays short, and the site builds without a warning."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from ilcampaign.campaign.docgen import cli_reference, schema_fields, spec_reference
from tests.conftest import ROOT


def sections(markdown: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", markdown, flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2])}


def test_the_spec_reference_lists_every_field_of_the_schema():
    listed = sections(spec_reference())
    listed["CampaignSpec"] = listed.pop("The top level")
    missing = [f"{section}.{field}" for section, field in sorted(schema_fields())
               if f"| `{field}` |" not in listed.get(section, "")]
    assert not missing
    assert len(schema_fields()) > 300  # every section, not the top level alone


def test_the_cli_reference_lists_every_command():
    import typer.main

    from ilcampaign.campaign.cli import app

    commands = typer.main.get_command(app).commands
    listed = sections(cli_reference())
    assert {f"`campaign {name}`" for name in commands} == set(listed)
    assert "`--workdir`" in listed["`campaign run`"] and "`--parsl`" in listed["`campaign run`"]


def test_readme_is_short_and_shows_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert "make demo" in readme and "make test" in readme


def test_the_site_builds_without_a_warning(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, NO_MKDOCS_2_WARNING="1"), timeout=600)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "reference" / "spec" / "index.html").exists()


def test_the_readme_spec_validates(tmp_path):
    spec = re.search(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL).group(1)
    (tmp_path / "readme.yaml").write_text(spec)
    result = subprocess.run([sys.executable, "-m", "ilcampaign.campaign", "validate", tmp_path / "readme.yaml"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
