"""Peak memory of one `image_resize` job on a large, highly compressible image.

    .venv/bin/python -m bench.image_memory [--size 7000] [--mode RGBA] [--format png]

Writes a SIZE×SIZE image (a gradient: a 7000×7000 RGBA PNG is ~0.2 MB on disk,
~196 MB decoded) into a temporary storage root, then, in a fresh Python process,
runs the `image_resize` handler on it (resize to 800×800) and prints that
process's resident set just before the job (`VmRSS`, the peak reset through
/proc/self/clear_refs) and its peak during the job (`VmHWM`). The difference is
what one such job costs a worker process at its peak. Linux only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = """
import asyncio, json, sys, uuid
from pathlib import Path
from ledger import jobtypes
from workers.handlers import image_resize

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])

root, name = Path(sys.argv[1]), sys.argv[2]
Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
before = status("VmRSS")
ctx = jobtypes.JobContext(
    job_id=uuid.uuid4(), job_type="image_resize", attempt=1, max_attempts=3, storage_root=root
)
payload = image_resize.ImageResizePayload(width=800, height=800, source_path=name)
result = asyncio.run(image_resize.image_resize(payload, ctx))
after = status("VmHWM")
print(json.dumps({"before_kib": before, "peak_kib": after, "result": result}))
"""


def make_image(path: Path, size: int, mode: str, fmt: str) -> int:
    from PIL import Image

    gradient = Image.linear_gradient("L").resize((size, size))
    image = Image.merge(mode, [gradient] * len(mode))
    image.save(path, format=fmt.upper())
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=7000)
    parser.add_argument("--mode", default="RGBA", choices=["RGBA", "RGB", "L"])
    parser.add_argument("--format", default="png", choices=["png", "jpeg"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ledger-image-bench-") as tmp:
        root = Path(tmp)
        name = f"source.{args.format}"
        on_disk = make_image(root / name, args.size, args.mode, args.format)
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(root), name],
            check=True,
            capture_output=True,
            text=True,
        )
    figures = json.loads(out.stdout)
    print(
        f"{args.size}×{args.size} {args.mode} {args.format.upper()}, {on_disk / 1e3:.0f} KB: "
        f"peak RSS {figures['peak_kib'] / 1024:.0f} MiB "
        f"(start {figures['before_kib'] / 1024:.0f} MiB, "
        f"job +{(figures['peak_kib'] - figures['before_kib']) / 1024:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
