"""The concept mask: bilinear upsampling as torch does it, then the unit's threshold."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from app.core.masks import concept_mask, upsample_bilinear


def test_upsampling_matches_torch_bilinear_without_aligned_corners():
    rng = np.random.default_rng(0)
    for h, w, out_h, out_w in ((7, 7, 112, 112), (14, 9, 224, 100), (1, 1, 5, 5), (3, 5, 3, 5)):
        values = rng.normal(size=(h, w)).astype(np.float32)
        expected = F.interpolate(torch.from_numpy(values)[None, None], size=(out_h, out_w),
                                 mode="bilinear", align_corners=False)[0, 0].numpy()
        np.testing.assert_allclose(upsample_bilinear(values, out_h, out_w), expected,
                                   rtol=1e-5, atol=1e-5)


def test_the_mask_is_where_the_upsampled_map_exceeds_the_threshold():
    unit_map = np.zeros((4, 4), np.float32)
    unit_map[1, 2] = 10.0  # one hot cell: the mask is a blob around it, nothing elsewhere
    mask = concept_mask(unit_map, 5.0, 64)
    assert mask.dtype == np.uint8 and mask.shape == (64, 64)
    ys, xs = np.nonzero(mask)
    assert ys.min() >= 16 and ys.max() < 32 and xs.min() >= 32 and xs.max() < 48
    assert not concept_mask(unit_map, 10.0, 64).any()  # strictly above the threshold
