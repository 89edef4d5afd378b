"""Explanations of a model's output: CAM heatmaps, their faithfulness, region SHAP, overlays.

May import ``core`` and ``inference``; never storage, pipelines, ui or cli."""
