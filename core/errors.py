"""Exceptions a reviewer can act on.

Every message is written for the person at the screen: it says what is wrong with *their*
input or set-up and what to do next. Pages and the CLI catch ``ReviewError`` at their edge.
"""

from __future__ import annotations


class ReviewError(Exception):
    """Base class for problems the user can fix (bad input, missing weights, bad config)."""


class InputRejected(ReviewError):
    """The uploaded bytes are not an image this tool can read."""


class EmptyInput(InputRejected):
    pass


class InputTooLarge(InputRejected):
    pass


class UnsupportedFormat(InputRejected):
    pass


class FormatMismatch(InputRejected):
    """The file name says one format, the bytes are another."""


class CorruptImage(InputRejected):
    pass


class NoPixelData(InputRejected):
    pass


class WrongModality(InputRejected):
    """A valid image that the selected model must not be given (e.g. a CT slice to the CXR model)."""


class WeightsMissing(ReviewError):
    """No trained weights were found and untrained mode was not chosen."""

    def __init__(self, message: str, *, expected_path: str, model_id: str) -> None:
        super().__init__(message)
        self.expected_path = expected_path
        self.model_id = model_id


class WeightsInvalid(ReviewError):
    """A weights file exists but does not fit the model's architecture."""


class ConfigError(ReviewError):
    """A configuration file or setting has a value the app cannot use."""


class BadParameter(ReviewError):
    """A request names something the tool does not have (a finding, CAM method, colormap or model)."""


class StorageError(ReviewError):
    """The review database refused or could not complete a write."""


class InvalidReview(ReviewError):
    """A verdict or note that cannot be stored as given (unknown finding, empty reviewer...)."""


class NotAVolume(InputRejected):
    """A file that is not a 3D scan where one is expected (2D, 4D, not NIfTI or DICOM at all)."""


class MixedSeries(InputRejected):
    """Files from more than one DICOM series were uploaded as one volume."""


class GridMismatch(InputRejected):
    """Two arrays that must share a voxel grid do not (MRI channels, or a mask and its image)."""


class UnsafeArchive(InputRejected):
    """A zip with path traversal, too many members or members too large to unpack safely."""


class ChannelAssignmentError(InputRejected):
    """The uploaded MRI files cannot be assigned to the channels the model needs."""


class TrainingDataError(ReviewError):
    """A labelled image folder that cannot be trained or tested on as it stands (a class folder
    missing or empty, a folder that names no class of the model)."""
