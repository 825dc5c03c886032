"""Tiny random models, tokenizers and image processors saved to folders, plus a small synthetic stimulus set.

Built from configs with no network access (tests of align.extract). Every model has 2 layers and width 16-32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from align.data._stimuli import Stimulus
from align.data._stimuli import StimulusSet
from align.extract._spec import ModelSpec

WORDS = ("a an the red blue green small big cat dog bird tree car house sits on under near mat road grass "
         "photo of").split()
CAPTIONS = [
    ("a red cat sits on the mat", "a cat"),
    ("the blue car", "a big blue car near the house under the tree"),
    ("a small bird", "the bird sits on a green tree near the road"),
    ("a dog", "a big dog sits on the grass"),
    ("a photo of a house", "the house"),
]


def stimulus_set(folder: Path, n: int = 5, name: str = "tiny") -> StimulusSet:
    """``n`` (at most 5) random 40x48 RGB images with 2 captions each, written as PNG files to ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)).save(path)
        items.append(Stimulus(image_id=f"img{i}", image=path, captions=CAPTIONS[i]))
    return StimulusSet(name=name, stimuli=items)


# ------------------------------------------------------------------------------------------------ tokenizers


def save_tokenizer(folder: Path, style: str, padding_side: str = "right"):
    """A word-level tokenizer over ``WORDS``: style "bos" (LLaMA-like: BOS prefix, eos, NO pad token) or "bert"
    ([CLS] ... [SEP], [PAD])."""
    from tokenizers import Tokenizer
    from tokenizers import models
    from tokenizers import pre_tokenizers
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    if style == "bos":
        specials = ["<unk>", "<s>", "</s>"]
    else:
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {t: i for i, t in enumerate(specials + list(WORDS))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=specials[0] if style == "bos" else "[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if style == "bos":
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                       padding_side=padding_side)
    else:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                                       unk_token="[UNK]", padding_side=padding_side)
    fast.save_pretrained(folder)
    return fast


# ---------------------------------------------------------------------------------------------------- models

LANGUAGE_FAMILIES = ("bloom", "llama", "gemma3", "bert")
VISION_FAMILIES = ("dinov2", "dinov2_registers", "vit", "clip")


def language_model(folder: Path, family: str, padding_side: str = "right") -> ModelSpec:
    """Save a tiny random language model of ``family`` with a tokenizer; returns its spec."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    vocab = len(WORDS) + 4
    common = dict(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    if family == "bloom":
        model = tf.BloomForCausalLM(tf.BloomConfig(vocab_size=vocab, hidden_size=32, n_layer=2, n_head=2))
    elif family == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(**common, intermediate_size=64, num_key_value_heads=1,
                                                   max_position_embeddings=64))
    elif family == "gemma3":
        model = tf.Gemma3ForCausalLM(tf.Gemma3TextConfig(**common, intermediate_size=64, num_key_value_heads=1,
                                                         head_dim=16, max_position_embeddings=64,
                                                         sliding_window=4, layer_types=["sliding_attention",
                                                                                        "full_attention"]))
    elif family == "bert":
        model = tf.BertModel(tf.BertConfig(**common, intermediate_size=64, max_position_embeddings=64))
    else:
        raise ValueError(family)
    model.save_pretrained(folder)
    save_tokenizer(folder, "bert" if family == "bert" else "bos", padding_side)
    return ModelSpec(name=f"tiny-{family}", modality="language", backend="hf", location=str(folder),
                     architecture=type(model).__name__, source="random init (test)")


def vision_model(folder: Path, family: str) -> ModelSpec:
    """Save a tiny random vision model of ``family`` with an image processor (28x28 input); returns its spec."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=28,
                  patch_size=7)
    if family in ("dinov2", "dinov2_registers"):
        if family == "dinov2":
            model = tf.Dinov2Model(tf.Dinov2Config(**common))
        else:
            model = tf.Dinov2WithRegistersModel(tf.Dinov2WithRegistersConfig(**common, num_register_tokens=3))
        processor = tf.BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 28, "width": 28})
    elif family == "vit":
        model = tf.ViTModel(tf.ViTConfig(**common), add_pooling_layer=False)
        processor = tf.ViTImageProcessor(size={"height": 28, "width": 28})
    elif family == "clip":
        config = tf.CLIPConfig(
            vision_config=dict(common, projection_dim=16),
            text_config=dict(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=16, projection_dim=16),
            projection_dim=16)
        model = tf.CLIPModel(config)
        processor = tf.CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    else:
        raise ValueError(family)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return ModelSpec(name=f"tiny-{family}", modality="vision", backend="hf", location=str(folder),
                     architecture=type(model).__name__, source="random init (test)")
