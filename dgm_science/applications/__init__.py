"""The applications built on the generative models, named once: goal-directed design (``dgm optimize``,
workflows/rules/design.smk) and property prediction (workflows/rules/prediction.smk). Their code lives in
``dgm_science/domains/molecules`` for now; this package is where it moves (``applications/<app>/``), and it
imports nothing, so that the workflow's parse (workflows/rules/common.smk) imports no torch for it.

Each is a top-level block of the pipeline's config and a folder under ``results/`` of the same name;
neither is a domain, and their runs are not generative runs, so the workflow's list of domains
(workflows/rules/common.smk), the report's summary and its trade-off table leave them out by this list.
"""

APPLICATIONS: tuple[str, ...] = ("prediction", "design")
"""Config blocks and ``results/`` folders of the applications (no generative runs in them)."""
