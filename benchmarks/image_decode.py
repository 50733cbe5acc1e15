"""Does rxpipe read a folder of JPEG files into training batches as fast as tf.data?

The input pipeline alone, no model: files → decode → resize to 128×128 → float32 in
[0, 1] → batches of 64, drained in a tight loop on the main thread. On a GPU this is the
limit (an H100 trains ResNet50 on about 4,000 images/s; one CPU core decodes and resizes
a few hundred JPEGs/s), so rxpipe must not be the slower way to do it.

Data: 2,048 JPEG files (``--quick``: 512) of 640×480, written at run time into a temporary
folder from random crops (55-100% of the height, 4:3, sometimes mirrored) of scikit-learn's
two bundled photos (``load_sample_images``, one class folder each), JPEG quality 75-95,
seeded; nothing is downloaded. The files are in the page cache: this measures decoding,
not the disk.

- tf.data, the baseline (the idiomatic pipeline, in the same process): the same file list
  → ``from_tensor_slices((paths, labels))`` → ``map(read_file, decode_jpeg, resize,
  cast/scale, num_parallel_calls=AUTOTUNE)`` → ``batch(64)`` → ``prefetch(AUTOTUNE)``.
- rxpipe with k = 1 and 2 workers: ``collect.image_folder(chunk_size=64)`` →
  ``process.decode_image(size=[128, 128], workers=k)`` → ``process.normalize()`` (built
  by name through ``rxpipe.registry``, as a pipeline file builds them), read with
  ``rxpipe.flow.iterate`` (the trainer's side of the bridge: a bounded buffer of 4).

Both produce the same pixels, and this is checked on every file before timing (one
untimed pass of each, compared batch by batch: ids, labels and float32 arrays, exactly).
For that, tf.data is configured as rxpipe decodes (which a served model repeats): JPEG
with the accurate integer DCT (``dct_method="INTEGER_ACCURATE"``: TF's default, the
fast DCT, gave pixels up to 6 levels off on a sample file and decoded these files about
3% faster, measured once), bilinear resizing (half-pixel centres, no antialiasing: both
sides' default) rounded to uint8, then ``* (1/255)`` in float32 (``tf.image.resize``
alone keeps float32; ``/ 255`` rounds differently).

The machine is shared and its speed drifts, so the variants alternate in rounds
(tf.data, rxpipe 1, tf.data, rxpipe 2, tf.data, ...). Each rxpipe pass is divided by the
mean of the tf.data passes right before and after it, each 2-worker pass by the mean of
the 1-worker passes around it; a result is the median of these ratios (with quartiles),
and images/s are medians too. Each result also has, per image, the process's CPU time
(all threads, user + system; median over passes), the system part of it and the minor
page faults, and ``first_pass_rss_growth_mb``: the most the process's resident memory
grew above its level at the start of the variant's first (untimed) pass, sampled every
10 ms (first passes in the order tf.data, rxpipe 1, rxpipe 2).

Goal: rxpipe with 2 workers at least as fast as tf.data (ratio >= 1.0) on this 2-core
machine. The 1-worker ratio and the 2-worker scaling have no goal (for reference:
``parallel_scaling.py`` shows 2 threads of GIL-releasing numpy work at ≥ 1.8× one).

Usage: python benchmarks/image_decode.py [--quick] [--json] [--files N] [--rounds N]
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import resource
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
from _common import MB, Report, at_least, machine, make_parser, paired, quartiles

WIDTH, HEIGHT = 640, 480
"""The files' size."""
SIZE = (128, 128)
"""What they are resized to (height, width)."""
BATCH = 64
CLASSES = ("china", "flower")
"""One class folder per bundled photo (``load_sample_images`` order)."""


def write_images(root: Path, count: int, seed: int = 0) -> list[str]:
    """``count`` JPEG files under ``root/<class>/``; their paths relative to ``root``.

    The list is in ``collect.image_folder``'s reading order (files sorted within a
    class, the classes interleaved), which the pixel check also verifies by the ids.
    """
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # two 427×640 RGB photos
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
    names = []
    for n in range(count):
        photo = photos[n % len(CLASSES)]
        height = int(photo.shape[0] * rng.uniform(0.55, 1.0))
        width = height * WIDTH // HEIGHT
        top = int(rng.integers(0, photo.shape[0] - height + 1))
        left = int(rng.integers(0, photo.shape[1] - width + 1))
        crop = photo[top : top + height, left : left + width]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        image = Image.fromarray(np.ascontiguousarray(crop)).resize(
            (WIDTH, HEIGHT), Image.Resampling.BICUBIC
        )
        name = f"{CLASSES[n % len(CLASSES)]}/{n // len(CLASSES):05d}.jpg"
        image.save(root / name, "JPEG", quality=int(rng.integers(75, 96)))
        names.append(name)
    return names


def tf_dataset(root: Path, names: list[str]) -> Any:
    """The idiomatic tf.data pipeline, configured to give rxpipe's pixels."""
    import tensorflow as tf

    def load(path: Any, label: Any) -> tuple[Any, Any]:
        data = tf.io.read_file(path)
        image = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")
        image = tf.image.resize(image, SIZE)  # bilinear, half-pixel centres, float32
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return tf.cast(image, tf.float32) * (1 / 255), label

    paths = [str(root / name) for name in names]
    labels = np.array([CLASSES.index(name.split("/")[0]) for name in names], np.int64)
    return (
        tf.data.Dataset.from_tensor_slices((paths, labels))
        .map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(BATCH)
        .prefetch(tf.data.AUTOTUNE)
    )


def rxpipe_stream(root: Path, workers: int) -> Any:
    """rxpipe's image path, built by plugin name as examples/image_folder.toml builds it
    (without its split, cache and shuffle)."""
    import reactivex

    from rxpipe.registry import registry

    return reactivex.empty().pipe(
        registry.create("collect.image_folder", {"path": str(root), "chunk_size": BATCH}),
        registry.create("process.decode_image", {"size": list(SIZE), "workers": workers}),
        registry.create("process.normalize", {}),
    )


def drain_tf(dataset: Any) -> int:
    """Read every batch; the images read."""
    count = 0
    for images, _ in dataset:
        count += int(images.shape[0])
    return count


def drain_rxpipe(stream: Any) -> int:
    """Read every batch through a bounded buffer, as the trainer does; the images read."""
    from rxpipe.flow import iterate

    count = 0
    for batch in iterate(stream):
        count += batch.size
    return count


def check_equal(dataset: Any, stream: Any, names: list[str]) -> int:
    """Both pipelines give the same ids, labels and float32 pixels; the images compared."""
    from rxpipe.flow import iterate

    compared = 0
    for (images, labels), batch in zip(dataset, iterate(stream), strict=True):
        ids = batch.ids.tolist()
        expected = names[compared : compared + len(ids)]
        if ids != expected:
            raise AssertionError(
                f"batch at image {compared}: expected rxpipe's ids {expected[:3]}... "
                f"(tf.data's file order). Received: {ids[:3]}..."
            )
        theirs, ours = images.numpy(), batch.features
        if ours.dtype != theirs.dtype or ours.shape != theirs.shape:
            raise AssertionError(
                f"{ids[0]}: expected tf.data's {theirs.dtype} {theirs.shape}. "
                f"Received: {ours.dtype} {ours.shape}"
            )
        if not np.array_equal(ours, theirs):
            worst = np.unravel_index(np.argmax(np.abs(ours - theirs)), ours.shape)
            raise AssertionError(
                f"{ids[worst[0]]}: expected tf.data's pixels. Received: "
                f"{int((ours != theirs).sum())} values differ, the most "
                f"{float(np.abs(ours - theirs)[worst]) * 255:.2f} levels at {worst[1:]}"
            )
        if not np.array_equal(batch.labels, labels.numpy()):
            raise AssertionError(f"{ids[0]}: expected tf.data's labels. Received: other labels")
        compared += len(ids)
    return compared


def rss_now() -> int:
    """This process's resident set size, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssGrowth:
    """The most the RSS grows above its level at ``__enter__``, sampled every 10 ms."""

    def __init__(self) -> None:
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_now())

    def __enter__(self) -> RssGrowth:
        self.start = self.peak = rss_now()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_now())

    @property
    def mb(self) -> float:
        return (self.peak - self.start) / MB


class Variant:
    """One way to read the folder: its passes' images/s and memory growth."""

    def __init__(self, drain: Callable[[], int], expected: int) -> None:
        self.drain = drain
        self.expected = expected
        self.rates: list[float] = []
        self.cpu_ms: list[float] = []  # CPU time (all threads, user + system) per image
        self.system_ms: list[float] = []  # of which in the kernel (page faults, mostly)
        self.faults: list[float] = []  # minor page faults per image
        self.growth_mb = 0.0  # in the first pass

    def first_pass(self) -> None:
        """An untimed pass (warm-up) measuring how much the process's RSS grows."""
        with RssGrowth() as rss:
            count = self.drain()
        if count != self.expected:
            raise AssertionError(f"expected {self.expected} images a pass. Received: {count}")
        self.growth_mb = rss.mb

    def measure(self) -> float:
        """One timed pass; its images/s (also kept, with its CPU time and page faults)."""
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        count = self.drain()
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        if count != self.expected:
            raise AssertionError(f"expected {self.expected} images a pass. Received: {count}")
        self.rates.append(count / elapsed)
        system = after.ru_stime - before.ru_stime
        self.cpu_ms.append((after.ru_utime - before.ru_utime + system) * 1000 / count)
        self.system_ms.append(system * 1000 / count)
        self.faults.append((after.ru_minflt - before.ru_minflt) / count)
        return self.rates[-1]

    def costs(self) -> dict[str, Any]:
        """Median CPU ms per image (and in the kernel), page faults per image, RSS growth."""
        return {
            "cpu_ms_per_image": round(float(np.median(self.cpu_ms)), 3),
            "system_ms_per_image": round(float(np.median(self.system_ms)), 3),
            "page_faults_per_image": round(float(np.median(self.faults)), 1),
            "first_pass_rss_growth_mb": round(self.growth_mb, 1),
        }


def rounds(count: int, tf_data: Variant, one: Variant, two: Variant) -> Iterator[str]:
    """Run tf, [1, tf, 2, tf] × ``count``, 1, tf: every rxpipe pass between two tf.data
    passes, every 2-worker pass between two 1-worker passes. Yields a progress line."""
    tf_data.measure()
    for index in range(count):
        for variant in (one, tf_data, two, tf_data):
            variant.measure()
        yield f"round {index + 1}/{count}: " + ", ".join(
            f"{label} {v.rates[-1]:,.0f}"
            for label, v in (("tf.data", tf_data), ("rxpipe 1", one), ("rxpipe 2", two))
        )
    one.measure()
    tf_data.measure()


def around(rates: list[float], before: list[float], after: list[float]) -> list[float]:
    """Each rate over the mean of the baseline passes right ``before`` and ``after`` it.

    Example:
        >>> around([90.0, 45.0], [100.0, 50.0], [80.0, 40.0])
        [1.0, 1.0]
    """
    return [r / ((b + a) / 2) for r, b, a in zip(rates, before, after, strict=False)]


def main() -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--files", type=int, help="JPEG files (default 2048, quick 512)")
    parser.add_argument("--rounds", type=int, help="measured rounds (default 7, quick 3)")
    args = parser.parse_args()
    files = args.files or (512 if args.quick else 2048)
    count = args.rounds or (3 if args.quick else 7)
    report = Report(json_lines=args.json)
    report.note(
        f"machine: {machine()}; {files:,} JPEG files of {WIDTH}×{HEIGHT} → "
        f"{SIZE[0]}×{SIZE[1]} float32, batches of {BATCH}; {count} rounds"
    )
    with TemporaryDirectory(prefix="rxpipe-bench-images-") as folder:
        root = Path(folder)
        started = time.perf_counter()
        names = write_images(root, files)
        megabytes = sum((root / name).stat().st_size for name in names) / MB
        report.note(
            f"wrote {files:,} files ({megabytes:.0f} MB) in {time.perf_counter() - started:.1f} s"
        )

        dataset = tf_dataset(root, names)
        streams = {k: rxpipe_stream(root, k) for k in (1, 2)}
        tf_data = Variant(lambda: drain_tf(dataset), files)
        one, two = (Variant(partial(drain_rxpipe, streams[k]), files) for k in (1, 2))
        for variant in (tf_data, one, two):
            variant.first_pass()
        compared = check_equal(dataset, streams[1], names)
        report.note(f"pixel check: {compared:,} images equal (ids, labels, float32 pixels)")
        for line in rounds(count, tf_data, one, two):
            report.note(line)

    tf_rates = tf_data.rates
    one_ratios = around(one.rates, tf_rates[0::2], tf_rates[1::2])  # between tf 2j and 2j+1
    two_ratios = around(two.rates, tf_rates[1::2], tf_rates[2::2])  # between 2j+1 and 2j+2
    scaling = paired(two.rates, one.rates)  # 2-worker pass j: between 1-worker j and j+1

    def median(values: list[float]) -> float:
        return float(np.median(values))

    def result(name: str, rates: list[float], ratios: list[float], **extra: Any) -> None:
        value = median(rates)
        report.result(
            f"image_decode.{name}",
            value,
            "images/s",
            baseline=value / median(ratios),
            ratio_quartiles=quartiles(ratios),
            **extra,
        )

    report.result("image_decode.tf_data", median(tf_rates), "images/s", **tf_data.costs())
    result("rxpipe_1_worker_vs_tf_data", one.rates, one_ratios, **one.costs())
    result(
        "rxpipe_2_workers_vs_tf_data",
        two.rates,
        two_ratios,
        goal=at_least(1.0, "ratio"),
        **two.costs(),
    )
    result("rxpipe_2_workers_vs_1_worker", two.rates, scaling)
    report.note(f"load average after: {os.getloadavg()[0]:.2f} (1 min)")
    return report.summary()


if __name__ == "__main__":
    raise SystemExit(main())
