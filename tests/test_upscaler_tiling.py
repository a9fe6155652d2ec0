"""Tiny Upscaler tiling (docs/numerics.md "Tiny Upscaler", step 4): which tiles a sweep samples, what context each
sees, what it writes.

Expected positions come from that section's wording, not from the code's loops: tiles start every 112 latent pixels
(128 − overlap 16) until one reaches the far edge, which is snapped to end exactly there; the reverse sweep does the
mirror image. A cell belongs to the first tile of the sweep whose 128-pixel core contains it (later tiles never
overwrite what an earlier one wrote), and a tile sees 16 extra pixels of context after itself (forward sweep) or
before itself (reverse sweep), as far as the canvas goes.
"""

import pytest
import torch

from tinybreaker_ext.errors import ParameterError
from tinybreaker_ext.upscaler import TileGeometry, run_sweeps, sweep_tiles

TILE, STRIDE, MARGIN = 128, 112, 16
SIZES = [(300, 260), (128, 128), (129, 240), (241, 352), (90, 500), (40, 24)]


def forward_starts(length: int) -> list[int]:
    if length <= TILE:
        return [0]
    starts, k = [], 0
    while k * STRIDE + TILE < length:
        starts.append(k * STRIDE)
        k += 1
    return starts + [length - TILE]


def reverse_starts(length: int) -> list[int]:
    if length <= TILE:
        return [0]
    starts, k = [], 0
    while length - TILE - k * STRIDE > 0:
        starts.append(length - TILE - k * STRIDE)
        k += 1
    return starts + [0]


def coordinate_canvas(height: int, width: int) -> torch.Tensor:
    """Channel 0 = row index, 1 = column index, 2 = owner marker, 3 = write counter."""
    canvas = torch.zeros(1, 4, height, width)
    canvas[0, 0] = torch.arange(height, dtype=torch.float32)[:, None]
    canvas[0, 1] = torch.arange(width, dtype=torch.float32)[None, :]
    return canvas


def recording_sweeps(height: int, width: int, steps: int, geometry: TileGeometry | None = None):
    """Runs the sweeps with a tile function that records each read box (from the coordinate channels), marks the
    tile with its index within the sweep and counts writes."""
    canvas = coordinate_canvas(height, width)
    reads: list[tuple] = []
    counters: dict[int, int] = {}

    def refine(tile: torch.Tensor, step: int) -> torch.Tensor:
        index = counters.get(step, 0)
        counters[step] = index + 1
        rows, cols = tile[0, 0], tile[0, 1]
        reads.append((step, int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1))
        out = tile.clone()
        out[:, 2] = index
        out[:, 3] += 1
        return out

    run_sweeps(canvas, steps, refine, geometry or TileGeometry())
    return canvas, reads


@pytest.mark.parametrize("height,width", SIZES)
def test_forward_sweep_reads_each_tile_with_its_right_and_bottom_context(height, width):
    _canvas, reads = recording_sweeps(height, width, steps=1)
    tile_h, tile_w = min(TILE, height), min(TILE, width)
    expected = [(0, y, min(y + tile_h + MARGIN, height), x, min(x + tile_w + MARGIN, width))
                for y in forward_starts(height) for x in forward_starts(width)]
    assert reads == expected


@pytest.mark.parametrize("height,width", SIZES)
def test_reverse_sweep_runs_bottom_right_first_with_left_and_top_context(height, width):
    _canvas, reads = recording_sweeps(height, width, steps=2)
    tile_h, tile_w = min(TILE, height), min(TILE, width)
    expected = [(1, max(y - MARGIN, 0), y + tile_h, max(x - MARGIN, 0), x + tile_w)
                for y in reverse_starts(height) for x in reverse_starts(width)]
    assert [read for read in reads if read[0] == 1] == expected


@pytest.mark.parametrize("height,width", SIZES)
def test_every_cell_is_written_exactly_once_per_sweep_by_the_first_tile_that_covers_it(height, width):
    for steps, starts in ((1, forward_starts), (2, reverse_starts)):
        canvas, _reads = recording_sweeps(height, width, steps=steps)
        rows, cols = starts(height), starts(width)
        tile_h, tile_w = min(TILE, height), min(TILE, width)
        owner_row = [next(j for j, y in enumerate(rows) if y <= r < y + tile_h) for r in range(height)]
        owner_col = [next(k for k, x in enumerate(cols) if x <= c < x + tile_w) for c in range(width)]
        expected_owner = torch.tensor([[j * len(cols) + k for k in owner_col] for j in owner_row], dtype=torch.float32)
        assert torch.equal(canvas[0, 2], expected_owner)
        assert torch.equal(canvas[0, 3], torch.full((height, width), float(steps)))


def test_sweep_directions_alternate_step_by_step():
    _canvas, reads = recording_sweeps(300, 260, steps=4)
    firsts = {step: next(read for read in reads if read[0] == step) for step in range(4)}
    assert firsts[0][1] == 0 and firsts[0][3] == 0  # top-left first
    assert firsts[1][2] == 300 and firsts[1][4] == 260  # bottom-right first
    assert firsts[2][1:] == firsts[0][1:] and firsts[3][1:] == firsts[1][1:]


def test_last_row_and_column_are_snapped_to_the_canvas_edge():
    tiles = sweep_tiles(241, 352)
    assert max(tile.read[1] for tile in tiles) == 241 and max(tile.write[3] for tile in tiles) == 352
    last = tiles[-1]
    assert last.read == (241 - TILE, 241, 352 - TILE, 352)  # no context beyond the edge
    # rows start 0, 112, 113 and columns 0, 112, 224: the last tile only writes what the tiles before it left
    assert last.write == (STRIDE + TILE, 241, STRIDE + TILE, 352)


def test_canvas_smaller_than_a_tile_is_one_tile_of_the_canvas_size():
    for reverse in (False, True):
        tiles = sweep_tiles(5, 8, reverse=reverse)
        assert [(tile.read, tile.write) for tile in tiles] == [((0, 5, 0, 8), (0, 5, 0, 8))]
    narrow = sweep_tiles(20, 300)  # smaller than a tile in height only: one row of full-height tiles
    assert [tile.read[:2] for tile in narrow] == [(0, 20)] * 3


def test_custom_geometry_and_bad_geometry():
    tiles = sweep_tiles(10, 10, TileGeometry(size=4, overlap=1, margin=1))
    # stride 3; one pixel of context after each tile except the last, which is snapped to 10 − 4
    assert [tile.read[2:] for tile in tiles[:3]] == [(0, 5), (3, 8), (6, 10)]
    assert [tile.write[2:] for tile in tiles[:3]] == [(0, 4), (4, 7), (7, 10)]
    assert len(tiles) == 9
    with pytest.raises(ParameterError):
        TileGeometry(size=16, overlap=16)
    with pytest.raises(ParameterError):
        sweep_tiles(0, 10)
