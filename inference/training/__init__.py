"""Training the app's own classifiers on labelled image folders, and the figures a model card
reports: the test split's accuracy, per-class sensitivity, specificity and PPV, one-vs-rest AUC
with bootstrap intervals, the confusion matrix and calibration (``evaluation``).

Part of ``inference``: may import ``core`` and ``inference.models`` / ``inference.images``, and
numpy, torch and scikit-learn; never xai, storage, pipelines, ui or cli."""
