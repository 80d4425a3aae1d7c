"""GC tuning of `telemed serve` (PERFORMANCE.md trap 1): on by default, off on request."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from aiohttp import web

from telemed.cli import build_parser
from telemed.runtime import GC_THRESHOLD, tune_gc, tune_gc_after_startup


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_tuning_freezes_what_exists_and_raises_the_thresholds(restored_gc: None) -> None:
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLD
    assert gc.get_freeze_count() > 0


def test_serve_tunes_by_default_and_not_with_no_gc_tune() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve"]).gc_tune is True
    assert parser.parse_args(["serve", "--no-gc-tune"]).gc_tune is False


async def test_the_app_is_tuned_once_its_start_up_is_done(restored_gc: None) -> None:
    app = web.Application()
    tune_gc_after_startup(app)
    app.freeze()
    await app.startup()
    assert gc.get_threshold() == GC_THRESHOLD
    await app.cleanup()
