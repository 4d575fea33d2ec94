"""The "your own data" tutorials (docs/your-data/*.md) are kept true by running them: every fenced ```bash block
after a ``<!-- tutorial: FOLDER -->`` comment is run, line by line as a user would paste it, in a copy of FOLDER
(the tiny files the page's commands name, under tests/data/user/), the blocks of one page in order. A block marked
``<!-- tutorial: FOLDER dry-run -->`` holds Snakemake commands, run with ``-n`` (a dry run: the pipeline's plan on
the user's files, validated against the config schema) from a folder where ``workflows/`` is the repository's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs" / "your-data").glob("*.md"))
MARKER = re.compile(r"<!-- tutorial: (?P<folder>\S+)(?P<dry> dry-run)? -->\s*\n```bash\n(?P<body>.*?)\n```", re.S)


def tutorial_blocks(page: Path) -> list[tuple[str, bool, str]]:
    """(folder, dry run, commands) of each tutorial block of ``page``."""
    return [(m["folder"], bool(m["dry"]), m["body"]) for m in MARKER.finditer(page.read_text(encoding="utf-8"))]


def test_every_tutorial_page_has_blocks_and_their_files():
    assert PAGES, "docs/your-data/ has no page"
    for page in PAGES:
        if page.name == "index.md":
            continue
        blocks = tutorial_blocks(page)
        assert blocks, f"{page.name}: no <!-- tutorial: ... --> block"
        for folder, _, _ in blocks:
            assert (ROOT / folder).is_dir(), f"{page.name}: {folder} does not exist"


def run_block(body: str, cwd: Path, dry: bool) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "DGLBACKEND": "pytorch"}
    script = body
    if dry:
        script = re.sub(r"^snakemake\b(.*)$", rf"snakemake -s {ROOT}/Snakefile\1 -n --quiet", body, flags=re.M)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, f"tutorial block failed:\n{script}\n--- stdout\n{done.stdout[-3000:]}\n" \
                                 f"--- stderr\n{done.stderr[-5000:]}"


@pytest.mark.e2e
@pytest.mark.parametrize("page", [p for p in PAGES if p.name != "index.md"], ids=lambda p: p.stem)
def test_tutorial_runs_as_written(page, tmp_path):
    work = tmp_path / "work"
    for folder in dict.fromkeys(folder for folder, _, _ in tutorial_blocks(page)):
        shutil.copytree(ROOT / folder, work, dirs_exist_ok=True)
    (work / "workflows").symlink_to(ROOT / "workflows")
    for _, dry, body in tutorial_blocks(page):
        run_block(body, work, dry)
