"""The project's one import path for GuacaMol 0.5.5 (PyPI, 2023) under SciPy >= 1.12 and RDKit 2026.

GuacaMol is installed with ``pip install --no-deps -r envs/requirements-nodeps.txt``: its wheel pins
``rdkit-pypi``, which would install a second RDKit beside ``rdkit``. Its other dependencies (joblib,
numpy, scipy, tqdm, fcd) are pinned in the requirements files.

Before importing ``guacamol`` this sets ``scipy.histogram`` to ``numpy.histogram`` (unless SciPy still
has it): ``guacamol/utils/chemistry.py`` does ``from scipy import histogram``, a re-export of NumPy's
function that SciPy removed. Nothing else is patched.

Works: the goal-directed scoring functions, benchmarks and suites (``common_scoring_functions``,
``scoring_function``, ``standard_benchmarks``, ``benchmark_suites``, ``goal_directed_score_contributions``)
and ``utils.chemistry`` (``discrete_kldiv`` through the restored ``histogram``). Importing
``standard_benchmarks`` or ``benchmark_suites`` imports ``fcd`` and so torch (about 2 s), the scoring
functions alone do not. GuacaMol's fingerprints use RDKit's deprecated ``AllChem.GetMorganFingerprint``,
which logs a deprecation line per call: call its scorers inside ``rdkit.rdBase.BlockLogs()``. Not used
here: its distribution-learning benchmarks (the repo computes FCD and KL itself) and ``guacamol.data``
(downloads ChEMBL).
"""

from __future__ import annotations

import importlib
import sys
import types

INSTALL_HINT = "pip install --no-deps -r envs/requirements-nodeps.txt (guacamol==0.5.5; `make setup` does it)"


def import_guacamol(submodule: str | None = None) -> types.ModuleType:
    """Import and return ``guacamol`` (or ``guacamol.<submodule>``) through the shim; safe to call repeatedly.

    Raises ModuleNotFoundError with the install command when GuacaMol is not installed.
    """
    name = "guacamol" if submodule is None else f"guacamol.{submodule}"
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    import numpy
    import scipy

    if "histogram" not in vars(scipy):
        scipy.histogram = numpy.histogram
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != "guacamol":
            raise
        raise ModuleNotFoundError(f"GuacaMol is not installed: {INSTALL_HINT}", name="guacamol") from None
