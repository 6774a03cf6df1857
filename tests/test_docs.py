"""What a user of the repository reads: it names nothing outside the repository (no path of one machine, no
sibling folder that only the authors have), and every link in it leads somewhere (a file that exists, and a
heading of that file when the link names one)."""

from __future__ import annotations

import re
from pathlib import Path

from devops.config import REPO_ROOT

# The pages a reader follows links through: the README, the pages it links to, the benchmarks' page.
LINKED_PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")), REPO_ROOT / "bench" / "README.md"]

MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
BACKTICKED_DOC = re.compile(r"`(docs/[^`\s]+\.md)`")


def test_docs_name_no_path_outside_the_repository():
    files = [REPO_ROOT / "README.md", REPO_ROOT / "DEVELOPERS.md", *sorted((REPO_ROOT / "docs").glob("*.md")),
             *sorted((REPO_ROOT / "bench").iterdir())]
    found = [f"{path.relative_to(REPO_ROOT)}: {match.group(0)}" for path in files if path.is_file()
             for match in re.finditer(r"/work/\S*|\.\./shared\S*", path.read_text())]
    assert found == []


def test_the_readme_links_every_docs_page():
    readme = (REPO_ROOT / "README.md").read_text()
    unlinked = [page.name for page in sorted((REPO_ROOT / "docs").glob("*.md")) if f"](docs/{page.name})" not in readme]
    assert unlinked == []


def test_every_relative_link_leads_to_a_file_and_heading_that_exist():
    broken = []
    for page in LINKED_PAGES:
        text = page.read_text()
        targets = [(page.parent, target) for target in MARKDOWN_LINK.findall(text)
                   if not re.match(r"[a-z][a-z0-9+.-]*:", target)]  # https:, mailto: are not files
        targets += [(REPO_ROOT, target) for target in BACKTICKED_DOC.findall(text)]
        for base, target in targets:
            path_part, _, anchor = target.partition("#")
            path = (base / path_part).resolve() if path_part else page
            if not path.is_file():
                broken.append(f"{page.relative_to(REPO_ROOT)}: {target} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{page.relative_to(REPO_ROOT)}: {target} (no such heading)")
    assert broken == []


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as dashes, and -1,
    -2 ... after a repeated one. Lines inside fenced code blocks are not headings."""
    found: set[str] = set()
    fenced = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (heading := re.match(r"#{1,6} +(.+?) *#* *$", line)):
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
            anchor, n = slug, 0
            while anchor in found:
                n += 1
                anchor = f"{slug}-{n}"
            found.add(anchor)
    return found


def test_anchors_follow_githubs_rule(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Running in the VPC: `--on ecs`\n## What `sandbox.env` sets\n```\n# not a heading\n```\n"
                    "## Notes\n## Notes\n")
    assert anchors(page) == {"running-in-the-vpc---on-ecs", "what-sandboxenv-sets", "notes", "notes-1"}
