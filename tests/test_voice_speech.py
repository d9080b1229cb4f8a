"""OpenAI's audio endpoints served by sluiceway, driven by the official
``openai`` SDK: speech from the embedded eSpeak NG voice (decoded by sox,
duration checked against the text), streamed speech over SSE, the remote
TTS providers against the scripted fake upstream, and transcription with
the offline recogniser."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess

import httpx
import openai
import pytest

from sluiceway.engine.config import Config, ConfigError
from sluiceway.engine.gateway import Gateway
from sluiceway.providers.speech import parse_wav, wav_header

from .conftest import IN_CI
from .upstream import Script

HAVE_ESPEAK = shutil.which("espeak-ng") is not None
HAVE_SOX = shutil.which("sox") is not None
if not (HAVE_ESPEAK and HAVE_SOX):
    if IN_CI:
        pytest.fail("espeak-ng and sox must be installed in CI (scripts/test.sh installs them)")
    pytest.skip("espeak-ng or sox is not installed (scripts/setup.sh installs them)", allow_module_level=True)

TEXT = "The quick brown fox jumps over the lazy dog. It was a sunny day in the park."


@pytest.fixture(scope="module")
def srv(upstream):
    from sluiceway.server.app import create_app

    from .conftest import ServerThread, make_config

    cfg = make_config(upstream, voice={"speech": {
        "oai": {"kind": "openai", "base_url": f"{upstream.url}/v1", "api_key": "sk-tts", "model": "fake-tts"},
        "el": {"kind": "elevenlabs", "base_url": upstream.url, "api_key": "xi-key", "voice": "el-voice-1"}},
        "default": "espeak"})
    s = ServerThread(create_app(cfg)).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(srv):
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key="unused", max_retries=0)


def sox_seconds(data: bytes, ftype: str) -> float:
    """Decode with sox (a real decoder) and return the duration it found."""
    out = subprocess.run(["sox", "-t", ftype, "-", "-n", "stat"], input=data, capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr.decode()
    line = next(ln for ln in out.stderr.decode().splitlines() if ln.startswith("Length (seconds)"))
    return float(line.split(":")[1])


def plausible(seconds: float, text: str) -> bool:
    words = len(text.split())
    return words / 5.0 < seconds < words / 1.0  # 60–300 words a minute


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac"])
def test_speech_decodes_with_a_plausible_duration(client, fmt):
    resp = client.audio.speech.create(model="espeak", voice="alloy", input=TEXT, response_format=fmt)
    data = resp.read()
    assert plausible(sox_seconds(data, fmt), TEXT), fmt


def test_pcm_is_24khz_mono_as_openai_sends_it_and_speed_shortens_it(client):
    normal = client.audio.speech.create(model="espeak", voice="nova", input=TEXT, response_format="pcm").read()
    fast = client.audio.speech.create(model="tts-1", voice="nova", input=TEXT, response_format="pcm",
                                      speed=2.0).read()
    raw = ["-t", "raw", "-r", "24000", "-b", "16", "-c", "1", "-e", "signed-integer", "-L"]
    out = subprocess.run(["sox", *raw, "-", "-n", "stat"], input=normal, capture_output=True, timeout=30)
    assert out.returncode == 0
    seconds = len(normal) / 2 / 24000
    assert plausible(seconds, TEXT)
    assert len(fast) < 0.7 * len(normal)  # OpenAI model names go to the default voice; speed is honoured


def test_default_format_is_mp3_like_openais(srv):
    r = httpx.post(f"{srv.url}/v1/audio/speech", json={"model": "espeak", "input": "Hello there.", "voice": "echo"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
    assert sox_seconds(r.content, "mp3") > 0.3


def test_streamed_response_arrives_in_order_and_complete(client):
    whole = client.audio.speech.create(model="espeak", voice="alloy", input=TEXT, response_format="wav").read()
    parts = []
    with client.audio.speech.with_streaming_response.create(model="espeak", voice="alloy", input=TEXT,
                                                             response_format="wav") as resp:
        for chunk in resp.iter_bytes(4096):
            parts.append(chunk)
    assert len(parts) > 1
    assert b"".join(parts) == whole  # the same synthesis, every byte, in order
    rate, channels, pcm = parse_wav(whole)
    assert (rate, channels) == (22050, 1) and plausible(len(pcm) / 2 / rate, TEXT)


def test_sse_stream_format_sends_deltas_then_done(srv):
    with httpx.stream("POST", f"{srv.url}/v1/audio/speech", timeout=30,
                      json={"model": "espeak", "input": TEXT, "voice": "alloy", "response_format": "pcm",
                            "stream_format": "sse"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["input_tokens"] > 0
    assert len(deltas) >= 2 and all(e["type"] == "speech.audio.delta" for e in events[:-1])
    pcm = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert plausible(len(pcm) / 2 / 24000, TEXT)


def test_models_list_has_the_speech_model_marked_as_speech(client):
    models = {m.id: m for m in client.models.list()}
    assert "espeak" in models and models["espeak"].provider == "speech"
    assert {"oai/fake-tts", "el/eleven_flash_v2_5"} <= set(models)


def test_bad_requests_are_clear_4xx(client, srv):
    with pytest.raises(openai.NotFoundError) as e:
        client.audio.speech.create(model="nope", voice="alloy", input="hi")
    assert "espeak" in str(e.value)
    with pytest.raises(openai.BadRequestError):
        client.audio.speech.create(model="espeak", voice="alloy", input="hi", response_format="aac")
    with pytest.raises(openai.BadRequestError):
        client.audio.speech.create(model="espeak", voice="alloy", input="hi", speed=9)
    with pytest.raises(openai.BadRequestError):
        client.audio.speech.create(model="espeak", voice="no such voice!", input="hi")
    for body in ({"model": "espeak"}, {"model": "espeak", "input": ""}, {"model": 3, "input": "x"},
                 {"model": "espeak", "input": "x" * 5000}, {"model": "espeak", "input": "x", "stream_format": "ws"}):
        r = httpx.post(f"{srv.url}/v1/audio/speech", json=body)
        assert r.status_code == 400 and r.json()["error"]["message"], body


# ------------------------------------------------------------ remote TTS
def test_openai_compatible_tts_streams_the_upstreams_bytes(client, upstream):
    audio = bytes(range(256)) * 40
    upstream.add("fake-tts", Script([audio[:4000], 0.01, audio[4000:]], headers={"content-type": "audio/mpeg"}))
    got = client.audio.speech.create(model="oai/fake-tts", voice="coral", input="Hi there", speed=1.5).read()
    assert got == audio
    rec = upstream.last("fake-tts")
    assert rec.path == "/v1/audio/speech" and rec.headers["Authorization"] == "Bearer sk-tts"
    assert rec.body == {"model": "fake-tts", "input": "Hi there", "voice": "coral", "response_format": "mp3",
                        "speed": 1.5}


def test_elevenlabs_streams_pcm_and_maps_errors(client, upstream):
    pcm = struct.pack("<400h", *range(-200, 200))
    upstream.add("el-voice-1", Script([pcm[:300], pcm[300:]], headers={"content-type": "audio/pcm"}))
    got = client.audio.speech.create(model="el/eleven_flash_v2_5", voice="el-voice-1", input="Hello",
                                     response_format="pcm").read()
    # ElevenLabs' pcm_22050 is resampled to OpenAI's 24 kHz
    assert abs(len(got) // 2 - round(400 * 24000 / 22050)) <= 2
    rec = upstream.last("el-voice-1")
    assert rec.path.startswith("/v1/text-to-speech/el-voice-1/stream")
    assert rec.headers["xi-api-key"] == "xi-key" and rec.body["model_id"] == "eleven_flash_v2_5"
    upstream.add("el-bad", Script([b'{"detail": {"message": "invalid api key"}}'], status=401,
                                  headers={"content-type": "application/json"}))
    with pytest.raises(openai.APIStatusError) as e:
        client.audio.speech.create(model="el/x", voice="el-bad", input="Hello", response_format="pcm")
    assert e.value.status_code == 401 and "invalid api key" in str(e.value)


def test_unknown_voice_provider_keys_are_config_errors():
    with pytest.raises(ConfigError, match="base_ur"):
        Gateway(Config.model_validate({"embedded": False, "voice": {"speech": {"x": {"kind": "openai",
                                                                                     "base_ur": "http://h"}}}}))
    with pytest.raises(ConfigError, match="kind"):
        Gateway(Config.model_validate({"embedded": False, "voice": {"speech": {"x": {"kind": "nope"}}}}))
    with pytest.raises(ConfigError, match="default"):
        Gateway(Config.model_validate({"embedded": False, "voice": {"default": "missing"}}))


# ------------------------------------------------------------ transcription
def test_transcription_with_the_offline_recogniser(client):
    pytest.importorskip("pocketsphinx")
    wav = subprocess.run(["espeak-ng", "--stdout", "-v", "en-us+m3", "-s", "160", "one two three four five"],
                         capture_output=True, timeout=30).stdout
    rate, channels, pcm = parse_wav(wav)
    wav = wav_header(rate, len(pcm)) + pcm  # espeak's streaming header has no length
    out = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", wav, "audio/wav"))
    words = set(out.text.split())
    assert len(words & {"one", "two", "three", "four", "five"}) >= 3, out.text
    text = client.audio.transcriptions.create(model="pocketsphinx", file=("speech.wav", wav, "audio/wav"),
                                              response_format="text")
    assert "three" in text
    flac = subprocess.run(["sox", "-t", "wav", "-", "-t", "flac", "-"], input=wav, capture_output=True).stdout
    out = client.audio.transcriptions.create(model="pocketsphinx", file=("speech.flac", flac, "audio/flac"))
    assert len(set(out.text.split()) & {"one", "two", "three", "four", "five"}) >= 3, out.text


def test_transcription_bad_input(client, srv):
    pytest.importorskip("pocketsphinx")
    with pytest.raises(openai.BadRequestError):
        client.audio.transcriptions.create(model="pocketsphinx", file=("x.wav", b"not audio", "audio/wav"))
    with pytest.raises(openai.NotFoundError):
        client.audio.transcriptions.create(model="nope", file=("x.wav", b"RIFF", "audio/wav"))
    r = httpx.post(f"{srv.url}/v1/audio/transcriptions", files={"model": (None, "pocketsphinx")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"


def test_chinese_is_spoken_with_the_mandarin_voice(client):
    data = client.audio.speech.create(model="espeak", voice="alloy", input="今天天气很好，我们去公园散步吧。",
                                      response_format="wav").read()
    rate, _, pcm = parse_wav(data)
    assert 1.0 < len(pcm) / 2 / rate < 8.0


def test_openai_compatible_transcription_upstream(upstream, make_server):
    upstream.routes["/stt-test/v1/audio/transcriptions"] = Script(
        [b'{"text": "hello from the upstream"}'], headers={"content-type": "application/json"})
    srv = make_server(voice={"transcription": {"wh": {"kind": "openai", "base_url": f"{upstream.url}/stt-test/v1",
                                                      "api_key": "sk-stt", "model": "whisper-1"}}})
    c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="unused", max_retries=0)
    out = c.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"RIFF-fake-bytes", "audio/wav"),
                                        language="en")
    assert out.text == "hello from the upstream"
    rec = [r for r in upstream.records if r.path == "/stt-test/v1/audio/transcriptions"][-1]
    assert rec.headers["Authorization"] == "Bearer sk-stt"
    assert b'name="model"\r\n\r\nwhisper-1' in rec.raw and b"RIFF-fake-bytes" in rec.raw and b"\r\n\r\nen\r\n" in rec.raw
