"""The viewer's layers put every pixel where it belongs: a radiograph upright at full size, a
heatmap over the model's crop, a volume's values and millimetres kept."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np

from inference.images.preprocess import centre_crop_box
from pipelines.viewer_layers import MAX_VIEWER_SIDE, heatmap_layer, label_layer, volume_scene, xray_scene


def _read(layer):
    return nib.Nifti1Image.from_bytes(gzip.decompress(layer.nifti_gz))


def test_a_radiograph_is_upright_at_full_size_and_its_heatmap_lies_on_the_crop() -> None:
    pixels = np.zeros((300, 500), dtype=np.float32)
    pixels[10, 400] = 255  # near the top, to the right
    scene = xray_scene(pixels, "sha")
    image = _read(scene.layers[0])
    assert image.shape == (500, 300, 1)
    data = np.asarray(image.dataobj)
    assert data[400, 10, 0] == 255
    # Row 10 is above row 200 on the screen (y grows upwards in the viewer).
    assert (image.affine @ [400, 10, 0, 1])[1] > (image.affine @ [400, 200, 0, 1])[1]

    cam = np.zeros((10, 10), dtype=np.float32)
    cam[0, 0] = 1.0  # the crop's top-left corner
    layer = heatmap_layer(cam, pixels.shape, "Grad-CAM", trained=True)
    heat = _read(layer)
    box = centre_crop_box(pixels.shape)  # 300 x 300 from column 100
    centre = heat.affine @ [0, 0, 0, 1]  # the centre of cam pixel (0, 0) in image voxels
    assert np.allclose(centre[:2], [box.left + 14.5, -(box.top + 14.5)])
    corner = heat.affine @ [9, 9, 0, 1]
    assert np.allclose(corner[:2], [box.left + box.size - 15.5, -(box.top + box.size - 15.5)])
    # Stored as bytes, read as 0..1 (the values its colour scale shows).
    assert heat.dataobj.get_unscaled()[0, 0, 0] == 255 and np.isclose(np.asarray(heat.dataobj)[0, 0, 0], 1.0)
    assert layer.untrained == ""
    assert heatmap_layer(cam, pixels.shape, "Grad-CAM", trained=False).untrained.startswith("UNTRAINED")


def test_a_volume_keeps_its_values_and_geometry(samples) -> None:
    from inference.volume.nifti import load_nifti

    path = samples.parent / "mri" / "mni152_t1.nii.gz"
    mni_t1_volume = load_nifti(path.read_bytes(), path.name, max_bytes=10**9, max_voxels=10**9)
    scene = volume_scene(mni_t1_volume)
    image = _read(scene.layers[0])
    assert np.allclose(image.affine, mni_t1_volume.affine)
    values = np.asarray(image.get_fdata(dtype=np.float32))
    original = np.asarray(mni_t1_volume.data)
    step = (original.max() - original.min()) / 65535
    assert np.abs(values - original).max() <= step  # MR quantised to int16 with its scale in the header
    assert scene.window.name.startswith("Auto") and scene.units == ""


def test_a_label_layer_lists_only_the_labels_present() -> None:
    from core.results import LabelInfo, LabelMap

    data = np.zeros((4, 4, 4), dtype=np.int16)
    data[1, 1, 1] = 2
    labels = (LabelInfo(1, "liver", (200, 0, 0)), LabelInfo(2, "spleen", (0, 200, 0)))
    label_map = LabelMap(data, np.eye(4), labels, (), "model:x", "sha")
    layer = label_layer(label_map, {2}, "Masks", trained=False)
    assert [info.name for info in layer.labels] == ["spleen"]
    assert np.asarray(_read(layer).dataobj).dtype == np.uint8 and layer.untrained.startswith("UNTRAINED")


def test_a_reduced_radiograph_says_so_and_measures_in_the_original_pixels() -> None:
    """The scene itself (no browser): past 2048 pixels a side the layers are reduced, the status
    says how much, and the world coordinates stay the original image's pixels, so the heatmap and
    the crop outline land where they do on the full image."""

    pixels = np.zeros((1900, 2373), dtype=np.uint8)
    pixels[100, 2000] = 255  # one bright pixel near the top right
    scene = xray_scene(pixels, "x" * 64)
    assert "2048 × 1640" in scene.resolution and "86 %" in scene.resolution
    image = nib.Nifti1Image.from_bytes(gzip.decompress(scene.layers[0].nifti_gz))
    assert image.shape[:2] == (MAX_VIEWER_SIDE, 1640)
    i, j, _ = np.unravel_index(int(np.argmax(np.asarray(image.dataobj))), image.shape)
    x, y, _ = (image.affine @ np.array([i, j, 0, 1.0]))[:3]
    assert abs(x - 2000) < 1.5 and abs(-y - 100) < 1.5
    outline = nib.Nifti1Image.from_bytes(gzip.decompress(scene.layers[1].nifti_gz))
    assert outline.shape == image.shape, "the outline is the viewer's drawing layer: on the image's grid"
    cam = np.zeros((224, 224), dtype=np.float32)
    cam[10, 200] = 1.0
    heat = nib.Nifti1Image.from_bytes(gzip.decompress(heatmap_layer(cam, (1900, 2373), "", True).nifti_gz))
    hx, hy, _ = (heat.affine @ np.array([200, 10, 0, 1.0]))[:3]
    # The crop is the centred 1900 x 1900 square: columns 236..2136; cam pixel 200 of 224.
    assert abs(hx - (236 + (200 + 0.5) * 1900 / 224 - 0.5)) < 1 and abs(-hy - ((10 + 0.5) * 1900 / 224 - 0.5)) < 1
