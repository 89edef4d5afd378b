"""An MRI/CT case from the files a user sent (command line, API): a BraTS case is its 4 NIfTI files,
assigned to channels by their name suffixes; anything else is one volume (a NIfTI, a DICOM series
or its zip); and the segmentation network such a case goes to when none is named."""

from __future__ import annotations

from core.errors import BadParameter, ReviewError
from core.settings import Settings
from inference.models.spec import SegmentationSpec
from inference.volume.types import MultiChannelVolume, Volume


def read_case(files: list[tuple[str, bytes]], settings: Settings, key: bytes) -> Volume | MultiChannelVolume:
    """Raises ``InputRejected`` (a subclass) with the reader's reason when the files are no case."""
    from inference.volume.ingest import assign_mri_channels, load_mri_channels, load_volume

    max_bytes, max_voxels = settings.max_volume_upload_mb * 1_000_000, settings.max_volume_voxels
    names = [name for name, _ in files]
    if len(files) == 4 and all(name.lower().endswith((".nii", ".nii.gz")) for name in names):
        assignment = assign_mri_channels(names)
        by_name = dict(files)
        return load_mri_channels(
            {c: (n, by_name[n]) for c, n in assignment.items()},
            max_bytes=max_bytes,
            max_voxels=max_voxels,
            hash_key=key,
        )
    return load_volume(files, max_bytes=max_bytes, max_voxels=max_voxels, hash_key=key)


def segmenter_for(inputs: Volume | MultiChannelVolume, requested: str | None) -> SegmentationSpec:
    """``requested``, or the brain tumour network for a BraTS case and the whole-body one for a CT."""
    from inference.models.registry import BRATS_SEGRESNET, WHOLEBODY_CT_SEGRESNET, get_segmenter

    if requested:
        try:
            return get_segmenter(requested)
        except KeyError as exc:
            raise BadParameter(str(exc).strip("'\"")) from None
    if isinstance(inputs, MultiChannelVolume):
        return BRATS_SEGRESNET
    if inputs.modality == "MR":
        raise ReviewError(
            "This is a single MRI volume: the brain tumour model needs the 4 BraTS channels (T1c, T1, T2, FLAIR) "
            "as 4 NIfTI files, and the whole-body model needs CT. A mask made elsewhere is measured instead "
            "(`python -m inference measure`, or the MRI/CT page's 'A mask from another tool')."
        )
    return WHOLEBODY_CT_SEGRESNET
