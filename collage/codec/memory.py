"""Memory a decode may take, and one clear refusal before a decode that would not fit.

A decode at a large ``scale`` makes ``scale**2`` times the pixels (Kodak at scale 16 is
12288 x 8192). Codecs estimate their peak from the output size (``Codec.decode_bytes``, from
measured peaks: ``benchmarks/reliability.md``); :func:`check_decode_fits` compares it with
:func:`available_bytes` and, where it does not fit, raises a CodecError that names the
output size, the memory it needs, the memory available and the largest scale that fits,
instead of a MemoryError (or the kernel's OOM killer) part-way through.
"""

from __future__ import annotations

try:
  import resource
except ImportError:  # not a Unix: no address-space limit to read
  resource = None

from collage.codec.errors import CodecError

GB = 1 << 30
# A decode's fixed overhead beyond its arrays: starting the XLA backend (about 0.7 GB of address
# space, little of it resident), compiled code, buffers.
FIXED_BYTES = 512 << 20


def _meminfo_available() -> int | None:
  """The kernel's estimate of memory available to new work (MemAvailable), Linux only."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    return None
  return None


def _cgroup_headroom() -> int | None:
  """A cgroup v2 memory limit (a container's) minus what the cgroup already uses."""
  try:
    with open("/sys/fs/cgroup/memory.max") as f:
      limit = f.read().strip()
    with open("/sys/fs/cgroup/memory.current") as f:
      used = int(f.read().strip())
  except (OSError, ValueError):
    return None
  return None if limit == "max" else max(0, int(limit) - used)


def _address_space_headroom() -> int | None:
  """The address-space limit (``ulimit -v``) minus what this process already maps."""
  if resource is None:
    return None
  limit, _ = resource.getrlimit(resource.RLIMIT_AS)
  if limit == resource.RLIM_INFINITY:
    return None
  try:
    with open("/proc/self/status") as f:
      mapped = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
  except (OSError, ValueError, StopIteration):
    return None
  return max(0, limit - mapped)


def available_bytes() -> int | None:
  """Memory this process can still take: the least of the system's available memory, its
  cgroup's headroom and its address-space limit's headroom; None where none can be read
  (then nothing is refused)."""
  known = [v for v in (_meminfo_available(), _cgroup_headroom(), _address_space_headroom())
           if v is not None]
  return min(known) if known else None


def gigabytes(n: int) -> str:
  return f"{n / GB:.1f} GB"


def check_decode_fits(codec, height: int, width: int, channels: int, scale: int,
                      need_at=None) -> None:
  """Raises CodecError if ``codec`` decoding an image of that size at ``scale`` would need
  more memory (``codec.decode_bytes``, or ``need_at(scale)`` for a file whose decode the
  codec must be told more about) than is available."""
  if need_at is None:
    need_at = lambda s: codec.decode_bytes(height, width, channels, s)
  need, available = need_at(scale), available_bytes()
  if available is None or need <= available:
    return
  fits = next((s for s in range(scale - 1, 0, -1) if need_at(s) <= available), None)
  advice = (f"the largest scale that fits is {fits}" if fits else
            "not even scale 1 fits: free memory first")
  raise CodecError(f"decoding at scale {scale} makes a {width * scale}x{height * scale} image "
                   f"and needs about {gigabytes(need)} of memory, more than the "
                   f"{gigabytes(available)} available; {advice}")
