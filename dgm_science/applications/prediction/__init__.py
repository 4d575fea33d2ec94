"""Property prediction that knows its uncertainty: a hybrid model p(x, y) or a deep ensemble of
regressors predicts QM9 properties with their uncertainty and an out-of-distribution flag
(``predict.py``), the ``dgm predict`` / ``dgm evaluate-predictor`` commands (``commands.py``) and the
report's prediction section (``report.py``). The models (``hybrid-arm``, ``regressor-arm``) and their
training targets are the molecules domain's (``models.py``, ``targets.py``)."""

from dgm_science.applications import Application
from dgm_science.applications.prediction import commands, report  # noqa: F401  (register entries)
from dgm_science.registry import register


@register("application", "prediction")
class Prediction(Application):
    """Property prediction (workflows/rules/applications/prediction/): trained predictors, evaluated under shift."""

    name = "prediction"
    commands = ("predict", "evaluate-predictor")
