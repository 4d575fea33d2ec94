"""Every case of the bad-input corpus (``corpus.py``) through the real ``dgm`` command: exit code
2 with one ``dgm: error:`` line that names the file / option, no traceback, no hang, no file left
behind, no file of the workspace changed; and the cases that must succeed (valid JSON for
all-invalid samples, stale temp files removed) do."""

from __future__ import annotations

import pytest

from tests.robustness.corpus import CASES, run_corpus

pytestmark = pytest.mark.e2e  # ~3 min: a subprocess per case (make test-fast skips it)


@pytest.fixture(scope="module")
def outcomes():
    return {o.case.id: o for o in run_corpus(workers=2)}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case, outcomes):
    outcome = outcomes[case.id]
    wanted = "ok" if case.expect == "ok" else "clear"
    assert outcome.kind == wanted, f"{case.klass}: {outcome.kind}: {outcome.detail}\n{outcome.stderr[-2000:]}"
    if wanted == "clear":
        error = [line for line in outcome.stderr.splitlines() if "error:" in line]
        assert len(error) == 1 and all(name.replace("{ws}", "") in error[0] for name in case.names)


def test_corpus_covers_every_class():
    assert {c.klass for c in CASES} == {"security", "lost", "error", "silent", "hang"}
    assert len(CASES) >= 80
