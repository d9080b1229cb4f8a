"""Small audio conversions: resampling and channel mixing of PCM s16le
(numpy), and encoding to compressed formats through ``sox`` when it is
installed (the setup scripts install it)."""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess

from ...core import BadRequest


def to_mono_rate(pcm: bytes, rate: int, channels: int, target: int) -> bytes:
    """PCM s16le → mono at ``target`` Hz (linear interpolation: plenty for speech)."""
    import numpy as np  # ~20 MB: loaded on first use, not by every gateway that never speaks

    x = np.frombuffer(pcm[: len(pcm) - len(pcm) % (2 * channels)], dtype="<i2").astype(np.float32)
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    if rate != target and len(x):
        n = max(1, round(len(x) * target / rate))
        x = np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x)
    return np.clip(x, -32768, 32767).astype("<i2").tobytes()


@functools.cache
def sox_formats() -> tuple[str, ...]:
    """The compressed formats this machine's sox can write (asked once: ``sox -h``)."""
    if shutil.which("sox") is None:
        return ()
    try:
        out = subprocess.run(["sox", "-h"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    line = next((ln for ln in out.splitlines() if ln.startswith("AUDIO FILE FORMATS")), "")
    return tuple(f for f in ("mp3", "flac") if f in line.split())


async def sox_convert(data: bytes, *, in_args: list[str], out_type: str, out_args: list[str] | None = None) -> bytes:
    """Run sox once over a whole input (stdin → stdout)."""
    if shutil.which("sox") is None:
        raise BadRequest("this server cannot convert audio: sox is not installed", param="response_format")
    proc = await asyncio.create_subprocess_exec(
        "sox", "-q", *in_args, "-", *(out_args or []), "-t", out_type, "-",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(data)
    if proc.returncode:
        raise BadRequest(f"audio conversion failed: {err.decode(errors='replace').strip()[:200]}")
    return out


async def decode_to_pcm16k(data: bytes, filename: str) -> bytes:
    """Any audio file a client uploads → mono 16 kHz PCM s16le (what recognisers want).
    WAV is read here; anything else goes through sox."""
    from .base import parse_wav

    try:
        rate, channels, pcm = parse_wav(data)
        return to_mono_rate(pcm, rate, channels, 16000)
    except ValueError:
        pass
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if not ext.isalnum() or len(ext) > 8 or ext in ("wav", "pcm", "raw"):  # the type goes to sox's argv
        raise BadRequest("the audio file could not be read: send WAV (16-bit PCM), mp3, flac or ogg",
                         param="file")
    return await sox_convert(data, in_args=["-t", ext], out_type="raw",
                             out_args=["-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer", "-L"])
