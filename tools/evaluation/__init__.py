"""Evaluation of the triage: the core and the full Rasa NLU against two baselines (`python -m tools.evaluate`).

Modules: `cases` (the vignette files and the held-out phrases), `metrics` (scores), `systems` (the
triage core, the Rasa model, the rapidfuzz and DIET baselines), `diet` (the DIET baseline's training
data and model), `report` (Markdown and confusion-matrix PNGs).
"""
