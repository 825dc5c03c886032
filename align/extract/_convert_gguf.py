"""GGUF -> plain transformers checkpoint (config.json + model.safetensors + tokenizer files).

transformers reads a GGUF file by dequantising every tensor to float32, which for SmolLM2-135M takes ~15-20 s (pure
Python parsing of the vocabulary and tensor names) and for Gemma-3-270M ~60 s. Converting once to safetensors makes
every later load take well under a second. The weights are exactly the dequantised GGUF values: a Q4 model stays a
Q4 model, only stored in float32.
"""

from __future__ import annotations

from pathlib import Path


def convert_gguf_to_hf(gguf_path: str | Path, out_dir: str | Path) -> None:
    """Dequantise a GGUF causal LM and write it as a float32 transformers directory.

    Args:
      gguf_path: the ``.gguf`` file (any architecture transformers can read from GGUF: llama, gemma3, qwen2, ...).
      out_dir: an existing, empty folder; receives config.json, generation_config.json, model.safetensors and
        the tokenizer files.
    """
    import torch
    from transformers import AutoModelForCausalLM
    from transformers import AutoTokenizer

    gguf_path = Path(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # save_pretrained refuses models "quantized with gguf"; after dequantisation they are plain float32 modules,
    # so dropping the quantisation record makes them an ordinary checkpoint.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.config.dtype = "float32"
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)

