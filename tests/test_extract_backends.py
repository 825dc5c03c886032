"""Forward-hook backend on tiny torch modules, and the timm runner (on a stand-in with timm's interface; the real
timm test is skipped where timm is not installed)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from align.extract._hooks import capture  # noqa: E402
from align.extract._hooks import load_module  # noqa: E402
from align.extract._hooks import module_encoder  # noqa: E402
from align.extract._pooling import PoolingError  # noqa: E402
from align.extract._spec import ModelSpec  # noqa: E402
from align.extract._timm import intermediates_encoder  # noqa: E402

nn = torch.nn


def _images(n=3):
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)) for _ in range(n)]


def _preprocess(images):
    arrays = [np.asarray(im.resize((16, 16)), dtype=np.float32) / 255.0 for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Dropout(0.5), nn.Conv2d(4, 6, 3, stride=2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_hooks_spatial_mean_and_hooks_removed():
    net = _cnn()
    x = _preprocess(_images())
    layers = ["0", "3", "5"]
    encoder = module_encoder(net, _preprocess, layers, name="cnn", device="cpu", poolings=("mean",))
    out = encoder.encode(_images(), ["mean"])["mean"]
    assert encoder.layer_names == layers and [a.shape for a in out] == [(3, 4), (3, 6), (3, 6)]
    with torch.no_grad():
        first = net[0](x)
        np.testing.assert_allclose(out[0], first.mean((2, 3)).numpy(), atol=1e-6)
        np.testing.assert_allclose(out[2], net(x).numpy(), atol=1e-6)  # eval mode: dropout off
    assert all(not m._forward_hooks for m in net.modules())
    np.testing.assert_array_equal(encoder.encode(_images(), ["mean"])["mean"][1], out[1])  # deterministic


def test_hooks_errors():
    net = _cnn()
    with pytest.raises(PoolingError, match="CNN"):
        module_encoder(net, _preprocess, ["0"], name="cnn", device="cpu", poolings=("cls", "mean"))
    with pytest.raises(ValueError, match=r"no submodules \['nope'\]"):
        capture(net, ["nope"], torch.zeros(1, 3, 16, 16))
    assert all(not m._forward_hooks for m in net.modules())
    with pytest.raises(ValueError, match="needs a builder"):
        load_module(ModelSpec(name="x", modality="vision", backend="torch_module", location=""))


def test_hooks_spec_builder_and_token_outputs():
    class Tokens(nn.Module):
        """[b, 3, 16, 16] -> 1 class token + 16 patch tokens of width 8, then a block."""

        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, 8, 4, stride=4)
            self.cls = nn.Parameter(torch.randn(1, 1, 8))
            self.block = nn.Linear(8, 8)

        def forward(self, x):
            t = self.patch(x).flatten(2).transpose(1, 2)
            return self.block(torch.cat([self.cls.expand(len(x), -1, -1), t], 1))

    torch.manual_seed(0)
    net = Tokens()
    spec = ModelSpec(name="tok", modality="vision", backend="torch_module", location="",
                     builder=lambda: (net, _preprocess, ["block"]))
    encoder = load_module(spec, device="cpu", poolings=("cls", "mean"))
    out = encoder.encode(_images(2), ["cls", "mean"])
    with torch.no_grad():
        h = net(_preprocess(_images(2)))
    np.testing.assert_allclose(out["cls"][0], h[:, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(out["mean"][0], h[:, 1:].mean(1).numpy(), atol=1e-6)


class _FakeTimmViT(nn.Module):
    """timm's VisionTransformer interface: num_prefix_tokens, cls_token, forward_intermediates."""

    num_prefix_tokens = 2  # class token + 1 register

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 2, 8))
        self.blocks = nn.ModuleList([nn.Linear(8, 8) for _ in range(3)])

    def tokens(self, x):
        t = torch.cat([self.cls_token.expand(len(x), -1, -1), self.patch(x).flatten(2).transpose(1, 2)], 1)
        out = []
        for block in self.blocks:
            t = block(t)
            out.append(t)
        return out

    def forward_intermediates(self, x, indices=None, return_prefix_tokens=False, norm=False, stop_early=False,
                              output_fmt="NCHW", intermediates_only=False):
        assert intermediates_only and output_fmt == "NLC"
        out = self.tokens(x)
        if return_prefix_tokens:
            return [(t[:, 2:], t[:, :2]) for t in out]
        return [t[:, 2:] for t in out]


def test_timm_runner_on_a_stand_in():
    torch.manual_seed(0)
    net = _FakeTimmViT()
    encoder = intermediates_encoder(net, _preprocess, name="fake-vit", device="cpu", poolings=("cls", "mean"))
    assert encoder.layer_names == ["layer_1", "layer_2", "layer_3"]
    out = encoder.encode(_images(2), ["cls", "mean"])
    with torch.no_grad():
        ref = net.tokens(_preprocess(_images(2)))
    for layer, h in enumerate(ref):
        np.testing.assert_allclose(out["cls"][layer], h[:, 0].numpy(), atol=1e-6)
        np.testing.assert_allclose(out["mean"][layer], h[:, 2:].mean(1).numpy(), atol=1e-6)


def test_timm_real_model(tmp_path):
    timm = pytest.importorskip("timm")
    from align.extract._timm import load_timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    path = tmp_path / "vit.pth"
    torch.save(model.state_dict(), path)
    spec = ModelSpec(name="timm-vit-tiny", modality="vision", backend="timm", location=str(path),
                     architecture="vit_tiny_patch16_224")
    encoder = load_timm(spec, device="cpu", poolings=("cls", "mean"))
    assert encoder.layer_names == [f"layer_{i}" for i in range(1, 13)]
    images = _images(2)
    out = encoder.encode(images, ["cls", "mean"])
    x = torch.stack([_timm_transform(timm, model)(im) for im in images])
    with torch.no_grad():  # the blocks by hand
        h = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
        for block in model.blocks:
            h = block(h)
    np.testing.assert_allclose(out["cls"][-1], h[:, 0].numpy(), atol=1e-4)
    np.testing.assert_allclose(out["mean"][-1], h[:, model.num_prefix_tokens:].mean(1).numpy(), atol=1e-4)


def _timm_transform(timm, model):
    import timm.data

    return timm.data.create_transform(**timm.data.resolve_model_data_config(model), is_training=False)
