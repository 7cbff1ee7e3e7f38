"""Why this prediction (the building blocks) against the numpy backend: what the window
asks the worker for, and what the Why tab and the input pane show."""

from __future__ import annotations

import numpy as np
import pytest
from fake_backend import DEFAULT_LAYER, PREDICTIONS, explanation_of
from gui_driver import WindowDriver
from PyQt6.QtCore import Qt

from app.core.requests import (
    AccentuateRequest,
    ActivationGridRequest,
    GroupIconsRequest,
    IntegratedRequest,
    InvertRequest,
    UnitIconsRequest,
)
from app.core.tiling import grid_geometry
from app.core.view import AttentionView, BlocksView, ViewState
from app.gui.blocks_view import Overlay, groups_rgba, spatial_rgba
from app.gui.grid_view import tint_mosaic

pytest.importorskip("pytestqt")


EXPLAINED = ViewState(layer=DEFAULT_LAYER, parts=(BlocksView(True),))


def _shown(ui: WindowDriver) -> bool:
    return ui.blocks_showing_explanation() and ui.explanation_overlay() is not None


def test_w_explains_the_top_class_channels_for_and_against(ui, backend):
    ui.press(Qt.Key.Key_W)
    assert ui.showing_blocks_tab() and backend.views[-1].part(BlocksView).on
    ui.wait_until(lambda: _shown(ui))
    expected = explanation_of(DEFAULT_LAYER, EXPLAINED)
    order = np.argsort(-expected.channels, kind="stable")
    up = [int(u) for u in order[:8]]
    down = [int(u) for u in order[::-1][:8]]
    assert ui.blocks_channel_units() == up + down
    assert all(expected.channels[u] > 0 for u in up) and all(expected.channels[u] < 0
                                                             for u in down)
    assert "Why 'Egyptian cat'" in ui.blocks_info()
    np.testing.assert_array_equal(ui.explanation_overlay(), spatial_rgba(expected.spatial))
    # icons of the channels named: asked for, and drawn where they came
    asked = backend.asked(UnitIconsRequest)
    assert asked and set(up + down) <= set(asked[-1].units)
    ui.wait_until(lambda: ui.blocks_channel_has_icon(next(u for u in up if u % 2 == 0)))
    assert not any(ui.blocks_channel_has_icon(u) for u in up if u % 2)
    # a click on a channel's row selects that unit of the layer
    ui.click_blocks_channel(0)
    assert backend.views[-1].unit == up[0] and backend.views[-1].layer == DEFAULT_LAYER
    ui.press(Qt.Key.Key_W)
    assert not backend.views[-1].part(BlocksView).on
    ui.wait_until(lambda: ui.explanation_overlay() is None)


def test_a_picked_class_versus_another_and_the_groups_overlay(ui, backend):
    ui.press(Qt.Key.Key_W)
    ui.wait_until(lambda: _shown(ui))
    ui.click_prediction(1)
    ui.select_layer(DEFAULT_LAYER)  # the class unit was selected: back to a layer with a map
    ui.click_prediction(0, versus=True)
    view = backend.views[-1]
    assert view.part(BlocksView) == BlocksView(True, PREDICTIONS[1].index, PREDICTIONS[0].index)
    ui.wait_until(lambda: "vs 'Egyptian cat'" in ui.blocks_info())
    assert "Why 'tabby, tabby cat'" in ui.blocks_info()
    ui.choose_blocks_overlay(Overlay.GROUPS)
    expected = explanation_of(DEFAULT_LAYER, view)
    np.testing.assert_array_equal(ui.explanation_overlay(), groups_rgba(expected.group_spatial))
    assert len(ui.blocks_group_rows()) == 6


def test_hovering_the_input_shows_the_dictionary_of_that_position(ui, backend):
    ui.press(Qt.Key.Key_W)
    ui.wait_until(lambda: _shown(ui))
    ui.hover_input(0.30, 0.70)
    e = explanation_of(DEFAULT_LAYER, EXPLAINED)
    h, w = e.spatial.shape
    y, x = int(0.70 * h), int(0.30 * w)
    assert ui.blocks_dictionary_units() == [int(u) for u in e.dictionary_units[y, x]]
    assert f"At ({y}, {x})" in ui.blocks_dictionary_title()


def test_the_why_tab_keeps_the_window_within_a_small_screen(ui, backend):
    """Long class names and captions wrap: the window still fits 1280×720."""
    ui.window.resize(1264, 680)
    ui.press(Qt.Key.Key_W)
    ui.wait_until(lambda: _shown(ui))
    hint = ui.window.minimumSizeHint()
    assert hint.width() <= 1280 and hint.height() <= 720, (hint.width(), hint.height())
    assert ui.window.width() <= 1280


def test_path_integrated_attribution_freezes_the_frame_and_replaces_the_live_values(
        ui, backend):
    ui.press(Qt.Key.Key_W)
    ui.wait_until(lambda: _shown(ui))
    live = list(ui.blocks_channel_units())
    ui.click_integrated()
    assert backend.views[-1].frozen
    (integrated,) = backend.asked(IntegratedRequest)
    assert (integrated.layer, integrated.target, integrated.versus) == (
        DEFAULT_LAYER, PREDICTIONS[0].index, None)
    ui.wait_until(lambda: "path-integrated, 100 steps" in ui.blocks_channels_title())
    e = explanation_of(DEFAULT_LAYER, EXPLAINED)
    flipped = np.argsort(e.channels, kind="stable")  # the fake's integrated = −live
    assert ui.blocks_channel_units()[:8] == [int(u) for u in flipped[:8]]
    assert "within 0.0 %" in ui.blocks_channels_title()
    ui.press(Qt.Key.Key_F)  # unfreeze: a new frame, the live values again
    ui.wait_until(lambda: ui.blocks_channel_units() == live)


def test_a_tints_the_grid_by_each_channels_attribution(ui, backend):
    assert ui.grid_tint() is None and not backend.views[-1].part(BlocksView).on
    ui.press(Qt.Key.Key_A)
    assert backend.views[-1].part(BlocksView).on and not ui.showing_blocks_tab()
    ui.wait_until(lambda: ui.grid_tint() is not None)
    e = explanation_of(DEFAULT_LAYER, EXPLAINED)
    np.testing.assert_array_equal(ui.grid_tint(), e.channels)
    ui.press(Qt.Key.Key_A)
    assert not backend.views[-1].part(BlocksView).on
    assert ui.grid_tint() is None


def test_x_accentuates_the_unit_and_v_inverts_three_layers_of_the_frozen_frame(ui, backend):
    from fake_backend import LAYERS

    ui.select_unit(5)
    ui.press(Qt.Key.Key_X)
    assert backend.views[-1].frozen and ui.frame_tab_visible()
    assert [(r.layer, r.unit) for r in backend.asked(AccentuateRequest)] == [(DEFAULT_LAYER, 5)]
    ui.wait_until(lambda: ui.frame_captions()["accentuated"] == "final")
    assert ui.accentuated_title() == f"Accentuated: {DEFAULT_LAYER} unit 5"
    seed = ui.frame_seed_picture()
    assert seed is not None
    np.testing.assert_array_equal(ui.accentuated_picture(), 255 - seed)
    ui.press(Qt.Key.Key_V)
    layers = backend.asked(InvertRequest)[-1].layers
    names = [i.name for i in LAYERS]
    assert len(layers) == 3
    assert [names.index(n) for n in layers] == sorted(names.index(n) for n in layers)
    ui.wait_until(lambda: all(c.endswith("final") for k, c in ui.frame_captions().items()
                              if k.startswith("inverted")))
    assert ui.inverted_title() == "Inverted: what each layer keeps of the frame"


def test_m_shows_the_activation_grid_of_the_shown_layer(ui, backend):
    ui.press(Qt.Key.Key_M)
    assert backend.views[-1].frozen
    assert [r.layer for r in backend.asked(ActivationGridRequest)] == [DEFAULT_LAYER]
    ui.wait_until(lambda: ui.frame_captions()["activation grid"] == "final")
    assert ui.activation_grid_title() == f"Activation grid: {DEFAULT_LAYER}"


def test_t_shows_the_attention_from_the_token_under_the_mouse(ui, backend):
    from fake_backend import activations, attention_of

    assert ui.attention_overlay() is None
    ui.press(Qt.Key.Key_T)
    assert backend.views[-1].part(AttentionView) == AttentionView(True)  # from the class token
    ui.wait_until(lambda: ui.attention_overlay() is not None)
    h, w = activations(DEFAULT_LAYER).shape[1:]
    expected = attention_of(h, w, None)
    overlay = ui.attention_overlay()
    assert overlay is not None
    alpha = overlay[..., 3]
    assert np.unravel_index(int(alpha.argmax()), alpha.shape) == np.unravel_index(
        int(expected.argmax()), expected.shape)
    ui.hover_input(0.10, 0.80)
    assert backend.views[-1].part(AttentionView).query == (int(0.80 * h), int(0.10 * w))
    ui.press(Qt.Key.Key_T)
    assert not backend.views[-1].part(AttentionView).on
    ui.wait_until(lambda: ui.attention_overlay() is None)


def test_each_neuron_group_gets_the_icon_of_its_direction(ui, backend):
    ui.press(Qt.Key.Key_W)
    ui.wait_until(lambda: _shown(ui))
    assert [(r.layer, r.directions.shape) for r in backend.asked(GroupIconsRequest)
            ] == [(DEFAULT_LAYER, (6, 240))]
    ui.wait_until(lambda: all(ui.blocks_group_has_icon(i) for i in range(6)))


@pytest.mark.parametrize(("channels", "tile", "pad"), [(1280, 7, 1), (40, 28, 1), (7, 5, 2)])
def test_the_tint_colours_each_tile_by_its_value_and_leaves_gutters_clear(channels, tile, pad):
    g = grid_geometry(channels, tile, tile, pad)
    values = np.random.default_rng(channels).normal(size=channels).astype(np.float32)
    values[0] = 0.0
    shown = tint_mosaic(values, g)
    assert shown.shape == (g.height, g.width, 4) and shown.dtype == np.uint8
    expected = np.zeros_like(shown)  # tile by tile, as a reader would paint it
    largest = float(np.abs(values).max())
    for unit in range(channels):
        y, x = g.tile_origin(unit)
        v = float(values[unit]) / largest
        expected[y : y + tile, x : x + tile] = (
            (255, 150, 60, int(170 * v)) if v >= 0 else (80, 160, 255, int(-170 * v)))
    np.testing.assert_array_equal(shown, expected)
    assert shown[..., 3].max() == 170  # the largest |value| is the most opaque


def test_a_click_on_a_prediction_in_the_why_tab_explains_it_at_the_shown_layer(ui, backend):
    ui.select_layer("_blocks.10._project_conv")
    ui.press(Qt.Key.Key_W)
    ui.wait_until(lambda: _shown(ui) and "Why 'Egyptian cat'" in ui.blocks_info())
    before = ui.blocks_channel_units()
    ui.click_prediction(1)  # tabby
    view = backend.views[-1]
    assert view.layer == "_blocks.10._project_conv"  # not the logits
    assert ui.current_layer_text().startswith("_blocks.10._project_conv")
    assert PREDICTIONS[1].index in ui.marked_predictions() and ui.showing_blocks_tab()
    ui.wait_until(lambda: "Why 'tabby, tabby cat'" in ui.blocks_info())
    expected = explanation_of(view.layer, view)
    order = np.argsort(-expected.channels, kind="stable")
    ui.wait_until(lambda: ui.blocks_channel_units()[:8] == [int(u) for u in order[:8]])
    assert ui.blocks_channel_units() != before  # the new class's bars
    # outside the Why tab a click still selects the class unit, as before
    ui.press(Qt.Key.Key_W)
    ui.click_prediction(2)
    assert (backend.views[-1].layer, backend.views[-1].unit) == ("logits", PREDICTIONS[2].index)
