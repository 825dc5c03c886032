"""Pooling functions against manual loops, for both padding sides."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from align.extract._pooling import PoolingError  # noqa: E402
from align.extract._pooling import TokenLayout  # noqa: E402
from align.extract._pooling import check_poolings  # noqa: E402
from align.extract._pooling import first_token  # noqa: E402
from align.extract._pooling import last_token  # noqa: E402
from align.extract._pooling import masked_mean  # noqa: E402
from align.extract._pooling import pool_language  # noqa: E402
from align.extract._pooling import pool_vision  # noqa: E402
from align.extract._pooling import vision_cls  # noqa: E402
from align.extract._pooling import vision_mean  # noqa: E402

LENGTHS = [5, 2, 3]


def _batch(side: str):
    """hidden [3, 5, 4] with real tokens per row given by LENGTHS; padded positions hold NaN."""
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 5, 4, generator=g)
    mask = torch.zeros(3, 5, dtype=torch.long)
    for r, n in enumerate(LENGTHS):
        if side == "right":
            mask[r, :n] = 1
        else:
            mask[r, 5 - n:] = 1
    hidden[mask == 0] = float("nan")
    return hidden, mask


@pytest.mark.parametrize("side", ["right", "left"])
def test_language_poolings_match_loops(side):
    hidden, mask = _batch(side)
    for r in range(3):
        real = [t for t in range(5) if mask[r, t]]
        np.testing.assert_allclose(masked_mean(hidden, mask)[r], hidden[r, real].mean(0), rtol=1e-6)
        np.testing.assert_array_equal(last_token(hidden, mask)[r], hidden[r, real[-1]])
        np.testing.assert_array_equal(first_token(hidden, mask)[r], hidden[r, real[0]])
    for out in (masked_mean(hidden, mask), last_token(hidden, mask), first_token(hidden, mask)):
        assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_padding_side_does_not_change_poolings():
    right, mask_r = _batch("right")
    left, mask_l = _batch("left")
    for r, n in enumerate(LENGTHS):  # same real tokens on both sides
        left[r, 5 - n:] = right[r, :n]
    for pool in (masked_mean, last_token, first_token):
        np.testing.assert_array_equal(pool(right, mask_r), pool(left, mask_l))


def test_pool_language_several_poolings_and_bfloat16():
    hidden, mask = _batch("left")
    out = pool_language([hidden.bfloat16(), hidden], mask, ["mean", "last", "first"])
    assert set(out) == {"mean", "last", "first"}
    assert all(len(v) == 2 and v[0].dtype == torch.float32 for v in out.values())


def test_row_without_tokens_is_an_error():
    hidden, mask = _batch("right")
    mask[1] = 0
    with pytest.raises(PoolingError, match=r"rows \[1\]"):
        masked_mean(hidden, mask)


def test_vision_token_layout_with_registers():
    hidden = torch.randn(2, 1 + 4 + 9, 8)
    layout = TokenLayout(has_cls=True, n_prefix=5)
    np.testing.assert_array_equal(vision_cls(hidden, layout), hidden[:, 0])
    np.testing.assert_allclose(vision_mean(hidden, layout), hidden[:, 5:].mean(1), rtol=1e-6)
    with pytest.raises(PoolingError, match="no class token"):
        vision_cls(hidden, TokenLayout(has_cls=False, n_prefix=0))


def test_cnn_feature_maps_spatial_mean_and_cls_error():
    maps = torch.randn(2, 6, 3, 4)
    np.testing.assert_allclose(vision_mean(maps), maps.mean((2, 3)), rtol=1e-6)
    with pytest.raises(PoolingError, match="CNN.*use pooling 'mean'"):
        pool_vision([maps], ["cls", "mean"], what="model 'net'")


def test_check_poolings():
    assert check_poolings(None, "vision") == ("cls", "mean")
    assert check_poolings(None, "language") == ("mean", "last")
    assert check_poolings("first", "language") == ("first",)
    with pytest.raises(PoolingError, match="support poolings"):
        check_poolings(["cls"], "language")
    with pytest.raises(PoolingError, match="repeat"):
        check_poolings(["mean", "mean"], "vision")
