"""The live view's parts and the result's records: one of each kind, defaults when absent."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from app.core.messages import AblationMode, AttributionMode
from app.core.results import AttentionRecord, AttributionRecord, BuildingBlocks
from app.core.view import AttentionView, AttributionView, BlocksView, DeletionView, ViewState
from tests.fake_backend import DEFAULT_LAYER, make_result


def test_a_view_without_a_part_reads_its_default():
    view = ViewState(layer="_blocks.4", unit=3)
    assert view.part(AttentionView) == AttentionView()
    assert view.part(AttributionView).mode == AttributionMode.OFF
    assert view.part(DeletionView).ablated == () and view.part(BlocksView).on is False


def test_with_part_replaces_the_part_of_its_kind_and_keeps_the_others():
    view = ViewState(layer="a").with_part(AttentionView(True, (1, 2)))
    view = view.with_part(DeletionView((("a", (0,)),), AblationMode.MEAN))
    view = view.with_part(AttentionView(True, rollout=True))
    assert view.part(AttentionView) == AttentionView(True, None, True)
    assert view.part(DeletionView).mode == AblationMode.MEAN
    assert len(view.parts) == 2 and view.layer == "a"


def test_views_that_ask_for_the_same_compare_equal_whatever_the_order():
    a = ViewState(parts=(AttentionView(True), BlocksView(True, 3)))
    b = ViewState(parts=(BlocksView(True, 3), AttentionView(True), AttributionView()))
    assert a == b and hash(a) == hash(b)  # a default part is no part
    assert a != ViewState(parts=(AttentionView(True),))


def test_two_parts_of_one_kind_are_refused():
    with pytest.raises(ValueError, match="one part of each kind"):
        ViewState(parts=(AttentionView(True), AttentionView(False, (0, 0))))


def test_a_result_holds_each_stages_record_or_none():
    view = ViewState(layer=DEFAULT_LAYER,
                     parts=(AttributionView(AttributionMode.GUIDED), AttentionView(True)))
    r = make_result(DEFAULT_LAYER, 0, view=view)
    rec = r.record(AttributionRecord)
    assert rec is not None and rec.mode == AttributionMode.GUIDED
    assert r.record(AttentionRecord) is not None and r.record(BuildingBlocks) is None
    blank = dataclasses.replace(rec, saliency=np.zeros_like(rec.saliency))
    swapped = r.with_record(blank)
    assert swapped.record(AttributionRecord) is blank and len(swapped.records) == len(r.records)
    assert r.record(AttributionRecord) is rec  # the original is untouched
