"""Rate measured from real bytes."""


def bpp(num_bytes: int, height: int, width: int) -> float:
  """Bits per pixel of a file of ``num_bytes`` bytes for an ``height`` x ``width`` image."""
  if height <= 0 or width <= 0:
    raise ValueError(f"image size must be positive, got {height}x{width}")
  return 8.0 * num_bytes / (height * width)
