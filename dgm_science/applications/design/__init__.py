"""Goal-directed molecular design: a SMILES prior steered toward an objective under a budget of
scoring calls (``optimize.py``: REINVENT, screening, Graph GA), the objectives (``objectives.py``) and
the GuacaMol / PMO tasks and scores (``benchmarks.py``), scaffold decoration with a trained model
(``decorate.py``), the ``dgm optimize`` / ``dgm decorate`` commands (``commands.py``) and the report's
design section (``report.py``, with the published rows in ``published/``)."""

from dgm_science.applications import Application
from dgm_science.applications.design import commands, report  # noqa: F401  (register entries)
from dgm_science.registry import register


@register("application", "design")
class Design(Application):
    """Goal-directed design (workflows/rules/applications/design/): objectives and benchmark tasks, optimised."""

    name = "design"
    commands = ("optimize", "decorate")
