"""What a user of the repository reads and runs names nothing outside it: no path of one machine, no
sibling folder that only the authors have."""

from __future__ import annotations

import re

from devops.config import REPO_ROOT


def test_readme_and_bench_name_no_path_outside_the_repository():
    files = [REPO_ROOT / "README.md", REPO_ROOT / "DEVELOPERS.md", *sorted((REPO_ROOT / "bench").iterdir())]
    found = [f"{path.name}: {match.group(0)}" for path in files if path.is_file()
             for match in re.finditer(r"/work/\S*|\.\./shared\S*", path.read_text())]
    assert found == []
