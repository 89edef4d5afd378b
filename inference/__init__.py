"""Reading images and running models: the ingest front door (DICOM, PNG, JPEG, NIfTI, DICOM series),
model specs, weights and adapters, threshold bands, volume segmentation and measurement, and the
training of the project's own classifiers (``inference.training``).

Owns the model abstraction (``inference.models``) and the one weights module. May import ``core``
(and torch, MONAI, torchxrayvision, pydicom, nibabel); never xai, storage, pipelines, ui or cli.
``inference.images`` and ``inference.masks`` are independent of each other."""
