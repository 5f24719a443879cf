"""percodec against JPEG, WebP, AVIF and k-means on a dataset: rows, tables, plots.

Protocol (docs/BENCH.md): every codec sees the same model-sized 8-bit image (the shared
preprocessing), metrics are computed on 8-bit images at that size, every byte of every file
counts (bpp = 8 * bytes / (H * W)), and the generator is not counted (the scan-only JPEG row
is its analogue: tables held by the decoder). Per-image records are cached as JSON lines in
OUT/cache, so an interrupted run resumes; under torchrun each rank takes every W-th image
and rank 0 merges the caches.

The parts: `config` (settings, the images, the verification protocol, the checks before any
work), `runs` (coding and scoring every image, the cache), `tables` (summaries, tables,
BD-rates), `plots` (figures), `outputs` (everything written into OUT).
"""

from codec.bench.config import BenchConfig, load_images, protocols_for, verification
from codec.bench.outputs import write_outputs
from codec.bench.plots import plot_grid, plot_rd, plot_verify
from codec.bench.runs import Cache, Scorer, check, reconstruct, run
from codec.bench.tables import BD_WINDOW, bd_rates, quality_table, summarize, table, verification_table

__all__ = ["BD_WINDOW", "BenchConfig", "Cache", "Scorer", "bd_rates", "check", "load_images", "plot_grid",
           "plot_rd", "plot_verify", "protocols_for", "quality_table", "reconstruct", "run", "summarize", "table",
           "verification", "verification_table", "write_outputs"]  # fmt: skip
