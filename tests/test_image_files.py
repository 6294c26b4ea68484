"""suite.data.image_files: local image files read as the exported models decode them."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from suite.data import image_files, image_folder
from suite.errors import DataError


def sixteen_bit_gray(path):
    pixels = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64 + 17).astype(np.uint16)
    Image.fromarray(pixels).save(path)
    assert Image.open(path).mode == "I;16"
    return pixels


def test_a_16_bit_png_reads_as_the_serving_decoder_reads_it_not_clipped_white(tmp_path):
    pixels = sixteen_bit_gray(tmp_path / "g16.png")
    read = image_files.read_image(str(tmp_path / "g16.png"))
    served = tf.io.decode_image(tf.io.read_file(str(tmp_path / "g16.png")), dtype=tf.uint8)
    assert read.dtype == np.uint8 and read.shape == (32, 32, 1)
    np.testing.assert_array_equal(read, served.numpy())
    np.testing.assert_array_equal(read[..., 0], pixels >> 8)
    assert len(np.unique(read)) == 256  # PIL's convert("L") would leave {17, 81, ..., 255}


def test_the_classifier_folder_reader_keeps_16_bit_pixels_too(tmp_path):
    pixels = sixteen_bit_gray(tmp_path / "g16.png")
    rgb = image_folder.load_images([str(tmp_path / "g16.png")], 32)[0]
    np.testing.assert_array_equal(rgb, np.repeat((pixels >> 8).astype(np.uint8)[..., None], 3, -1))


@pytest.mark.parametrize("dtype, kind", [(np.int32, "integer"), (np.float32, "float")])
def test_32_bit_pixels_are_refused_naming_the_file_and_the_fix(tmp_path, dtype, kind):
    Image.fromarray(np.full((8, 8), 300, dtype)).save(tmp_path / "wide.tif")
    with pytest.raises(DataError, match=rf"wide\.tif: 32-bit {kind} pixels; save the image as 8- "
                                        "or 16-bit"):
        image_files.read_image(str(tmp_path / "wide.tif"))

