"""The one model abstraction: specs as data (registry), small adapters for what differs between
models, the weights module (where weights are looked for, their sha256, the labelled untrained
mode) and the loader. May import ``core``."""
