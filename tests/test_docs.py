"""The documentation stays true: the generated pages (docs/cli.md, the prompts in
docs/prompts.md) match the code, docs/index.md lists every page, and no local link in
README.md or docs/ points at a missing file."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))

# [text](target): the target up to whitespace or ")"; an optional "title" is ignored.
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def local_links(path: Path) -> list[str]:
    """The links of a Markdown file to local files (code blocks left out), anchors cut."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http:, https:, mailto:... or an anchor on the same page
        targets.append(target.split("#", 1)[0])
    return targets


@pytest.mark.parametrize("page", ["docs/cli.md", "docs/prompts.md"])
def test_generated_docs_are_up_to_date(page):
    result = subprocess.run(
        [sys.executable, "-m", "cogapp", "--check", page],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"{page} is out of date: run make docs\n" + result.stdout + result.stderr


def test_index_lists_every_page():
    linked = {(DOCS / t).resolve() for t in local_links(DOCS / "index.md")}
    missing = [p.name for p in PAGES if p.name != "index.md" and p.resolve() not in linked]
    assert not missing, f"docs/index.md does not link {missing}"


@pytest.mark.parametrize("page", [ROOT / "README.md", *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_local_links_exist(page):
    broken = [t for t in local_links(page) if t and not (page.parent / t).exists()]
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"
