"""The one model abstraction: specs as data (registry), small adapters for what differs between
models, the weights module (where weights are looked for, their sha256, the labelled untrained
mode), the loader, and the model cards of the models this project trained (``trained/``: their
weights and cards, written by ``python -m inference train``). May import ``core``."""
