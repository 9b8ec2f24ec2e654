"""CLIPScore with a tiny CLIP built offline and loaded through the real from_pretrained path."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from napari_scigen.core.models import MODEL_CACHE, ModelNotAvailableError  # noqa: E402
from napari_scigen.core.validation import InvalidInputError  # noqa: E402
from napari_scigen.metrics.clipscore import clip_score, embedding_tensor  # noqa: E402

MAX_LENGTH = 16


def _byte_symbols() -> list[str]:
    """The 256 byte-level symbols of the GPT-2/CLIP byte encoder."""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A 2-layer CLIP with a byte-level tokenizer, saved with save_pretrained."""
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    folder = tmp_path_factory.mktemp("tiny_clip")
    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=MAX_LENGTH
    )
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=MAX_LENGTH,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(folder)
    yield str(folder)
    MODEL_CACHE.clear()


@pytest.fixture
def slices():
    return np.random.default_rng(0).integers(0, 255, size=(6, 40, 36), dtype=np.uint8)


def _hand_scores(folder: str, images: np.ndarray, texts: list[str]) -> np.ndarray:
    """100 * max(cos, 0) from the model's own towers and projections."""
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(folder).eval()
    processor = CLIPProcessor.from_pretrained(folder)
    rgb = [np.repeat((i / 255.0).astype(np.float32)[..., None], 3, axis=-1) for i in images]
    pixels = processor.image_processor(images=rgb, do_rescale=False, return_tensors="pt")[
        "pixel_values"
    ]
    tokens = processor.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        image = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        text = model.text_projection(
            model.text_model(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            ).pooler_output
        )
    image = image / image.norm(dim=-1, keepdim=True)
    text = text / text.norm(dim=-1, keepdim=True)
    cosine = (image * text).sum(-1).numpy()
    return 100.0 * np.maximum(cosine, 0.0)


def test_clipscore_equals_100_times_clamped_cosine_of_model_embeddings(tiny_clip, slices):
    texts = ["sandstone", "fibres", "pores", "grains", "x", "noise"]
    result = clip_score(slices, texts, model=tiny_clip, device="cpu", batch_size=4)
    expected = _hand_scores(tiny_clip, slices, texts)
    np.testing.assert_allclose(result.values, expected, rtol=1e-4, atol=1e-4)
    assert result.value == pytest.approx(float(expected.mean()), rel=1e-4, abs=1e-4)
    assert all(0.0 <= v <= 100.0 for v in result.values)


def test_one_text_scores_every_slice_and_model_is_recorded(tiny_clip, slices):
    result = clip_score(slices[:3], "sandstone", model=tiny_clip, device="cpu")
    expected = _hand_scores(tiny_clip, slices[:3], ["sandstone"] * 3)
    np.testing.assert_allclose(result.values, expected, rtol=1e-4, atol=1e-4)
    assert result.as_dict()["model"] == tiny_clip
    assert result.texts == ("sandstone",)


def test_tensor_returning_get_image_features_gives_the_same_score(tiny_clip, slices, monkeypatch):
    """transformers 4 returned tensors, transformers 5 output objects: both work."""
    from transformers import CLIPModel

    reference = clip_score(slices[:2], "pores", model=tiny_clip, device="cpu")
    original = CLIPModel.get_image_features

    def as_tensor(self, *args, **kwargs):
        return embedding_tensor(original(self, *args, **kwargs))

    monkeypatch.setattr(CLIPModel, "get_image_features", as_tensor)
    again = clip_score(slices[:2], "pores", model=tiny_clip, device="cpu")
    np.testing.assert_allclose(again.values, reference.values, rtol=1e-6)


def test_embedding_tensor_reads_tensors_and_output_objects():
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    tensor = torch.ones(2, 4)
    assert embedding_tensor(tensor) is tensor
    assert embedding_tensor(BaseModelOutputWithPooling(pooler_output=tensor)) is tensor
    with pytest.raises(TypeError, match="pooler_output"):
        embedding_tensor(object())


def test_missing_hub_model_offline_raises_model_not_available(tmp_path, monkeypatch, slices):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelNotAvailableError, match="no-such-org/no-such-clip"):
        clip_score(slices[:1], "pores", model="no-such-org/no-such-clip", device="cpu")


def test_missing_local_directory_raises_model_not_available(tmp_path, slices):
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        clip_score(slices[:1], "pores", model=str(tmp_path / "absent"), device="cpu")


def test_text_count_must_match_slices(tiny_clip, slices):
    with pytest.raises(InvalidInputError, match="2 texts for 6 slices"):
        clip_score(slices, ["a", "b"], model=tiny_clip, device="cpu")
