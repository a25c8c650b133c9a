"""Golden-value tests of image decoding and fitting (input/images.py)."""

import os

from absl.testing import parameterized
import numpy as np
from PIL import Image
import tensorflow as tf

from input import images
from tests import helpers


class ToSpecTest(tf.test.TestCase, parameterized.TestCase):

  def test_rgb_to_gray_uses_itu_601_luma(self):
    # 0.299*100 + 0.587*150 + 0.114*200 = 140.75 -> 141
    x = np.array([[[100, 150, 200]]], np.uint8)
    out = images.to_spec(x, images.ImageSpec(1, 1, 1))
    self.assertEqual(out.dtype, np.uint8)
    self.assertEqual(out[0, 0, 0], 141)

  def test_gray_to_rgb_repeats(self):
    out = images.to_spec(np.full((2, 2, 1), 7, np.uint8), images.ImageSpec(2, 2, 3))
    self.assertAllEqual(out, np.full((2, 2, 3), 7))

  @parameterized.parameters(
      (np.uint8, 200, 16, 51400),  # 200 * 257
      (np.uint16, 51400, 8, 200),  # 51400 / 257
      (np.uint16, 1000, 8, 4),  # 3.89 rounds to 4
      (np.uint16, 65535, 8, 255),
      (np.uint8, 255, 16, 65535),
  )
  def test_bit_depth_maps_full_range(self, dtype, value, depth, expected):
    out = images.to_spec(np.full((1, 1, 1), value, dtype), images.ImageSpec(1, 1, 1, depth))
    self.assertEqual(out[0, 0, 0], expected)
    self.assertEqual(out.dtype, np.uint8 if depth == 8 else np.uint16)

  def test_center_crop_takes_middle_columns(self):
    x = np.tile(np.arange(8, dtype=np.uint8) * 10, (4, 1))[..., None]  # 4x8, value = 10*col
    out = images.to_spec(x, images.ImageSpec(4, 4, 1, resize="crop"))
    self.assertAllEqual(out[0, :, 0], [20, 30, 40, 50])

  def test_pad_centres_on_black(self):
    x = np.full((2, 4, 1), 90, np.uint8)
    out = images.to_spec(x, images.ImageSpec(4, 4, 1, resize="pad"))
    self.assertAllEqual(out[:, 0, 0], [0, 90, 90, 0])

  def test_stretch_keeps_uniform_value(self):
    out = images.to_spec(np.full((3, 9, 3), 77, np.uint8), images.ImageSpec(5, 5, 3,
                                                                             resize="stretch"))
    self.assertAllEqual(out, np.full((5, 5, 3), 77))

  def test_downscale_averages(self):
    # A 2-pixel checkerboard shrunk 4x becomes its mean (Lanczos is antialiased).
    x = np.indices((16, 16)).sum(0) % 2 * 200
    out = images.to_spec(x.astype(np.uint8)[..., None], images.ImageSpec(4, 4, 1))
    self.assertAllClose(out[1:3, 1:3, 0], np.full((2, 2), 100), atol=2)

  def test_bad_spec_values_are_named(self):
    with self.assertRaisesRegex(ValueError, "channels must be 1 or 3, got 2"):
      images.ImageSpec(4, 4, 2)
    with self.assertRaisesRegex(ValueError, "resize must be one of"):
      images.ImageSpec(4, 4, 1, resize="zoom")


class DecodeTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.create_tempdir().full_path

  def test_16bit_gray_png_keeps_all_bits(self):
    x = np.array([[0, 1, 1000], [40000, 65534, 65535]], np.uint16)
    path = helpers.save(os.path.join(self.dir, "g16.png"), x)
    out = images.read_file(path)
    self.assertEqual(out.dtype, np.uint16)
    self.assertAllEqual(out[..., 0], x)
    info = images.probe_file(path)
    self.assertEqual((info.channels, info.bit_depth), (1, 16))

  def test_16bit_rgb_png_keeps_all_bits(self):
    # Pillow would truncate this to 8 bits; the decoder must not.
    x = np.array([[[1000, 40000, 65535], [1, 2, 3]]], np.uint16)
    path = os.path.join(self.dir, "rgb16.png")
    tf.io.write_file(path, tf.io.encode_png(x))
    out = images.read_file(path)
    self.assertAllEqual(out, x)
    self.assertEqual(images.probe_file(path).bit_depth, 16)

  def test_rgba_composited_on_black(self):
    x = np.array([[[200, 100, 50, 128], [10, 20, 30, 255], [99, 99, 99, 0]]], np.uint8)
    path = helpers.save(os.path.join(self.dir, "a.png"), x)
    out = images.read_file(path)
    # 200*128/255 = 100.4, 100*128/255 = 50.2, 50*128/255 = 25.1
    self.assertAllEqual(out[0], [[100, 50, 25], [10, 20, 30], [0, 0, 0]])

  def test_palette_gif_becomes_rgb(self):
    x = np.zeros((4, 4, 3), np.uint8)
    x[:2] = [255, 0, 0]
    x[2:] = [0, 0, 255]
    path = os.path.join(self.dir, "p.gif")
    Image.fromarray(x).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(path)
    out = images.read_file(path)
    self.assertEqual(out.shape, (4, 4, 3))
    self.assertAllEqual(out[0, 0], [255, 0, 0])
    self.assertAllEqual(out[3, 3], [0, 0, 255])

  def test_truncated_jpeg_is_a_named_bad_image(self):
    path = helpers.write_truncated_jpeg(os.path.join(self.dir, "cut.jpg"))
    self.assertIsNotNone(images.probe_file(path))  # The header still reads...
    with self.assertRaisesRegex(images.BadImageError, "truncated"):
      images.read_file(path)  # ...the pixels do not.

  def test_not_an_image(self):
    path = os.path.join(self.dir, "fake.png")
    with open(path, "wb") as f:
      f.write(b"this is not a png")
    with self.assertRaisesRegex(images.BadImageError, "not a readable image"):
      images.read_file(path)
    with open(os.path.join(self.dir, "empty.jpg"), "wb"):
      pass
    with self.assertRaisesRegex(images.BadImageError, "empty file"):
      images.read_file(os.path.join(self.dir, "empty.jpg"))

  def test_exif_rotation_applied(self):
    x = np.zeros((2, 4, 3), np.uint8)  # 2 rows, 4 columns
    im = Image.fromarray(x)
    exif = im.getexif()
    exif[0x0112] = 6  # Rotate 90 CW when displayed.
    path = os.path.join(self.dir, "r.jpg")
    im.save(path, exif=exif)
    self.assertEqual(images.read_file(path).shape, (4, 2, 3))
    info = images.probe_file(path)
    self.assertEqual((info.height, info.width), (4, 2))

  def test_side_by_side_split(self):
    x = np.concatenate([np.zeros((2, 3, 1)), np.ones((2, 3, 1))], axis=1).astype(np.uint8)
    a, b = images.split_side_by_side(x)
    self.assertAllEqual(a, np.zeros((2, 3, 1)))
    self.assertAllEqual(b, np.ones((2, 3, 1)))
    with self.assertRaisesRegex(images.BadImageError, "odd width 5"):
      images.split_side_by_side(np.zeros((2, 5, 1), np.uint8))

  def test_encode_raw_and_png_round_trip(self):
    x = np.arange(24, dtype=np.uint16).reshape(2, 4, 3) * 2000
    raw = images.encode(x, "raw")
    self.assertAllEqual(np.frombuffer(raw, "<u2").reshape(2, 4, 3), x)
    png = images.encode(x, "png")
    self.assertAllEqual(tf.io.decode_png(png, dtype=tf.uint16).numpy(), x)


if __name__ == "__main__":
  tf.test.main()
