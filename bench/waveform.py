"""Waveform and speech analysis speed and memory: a 1-hour dual-channel 8 kHz recording (Twilio's
format, 115 MB of WAV) analysed the way the Celery task does (``recordings.analysis``: stream,
decode, peaks, voice activity, segments), plain and encrypted the way Twilio encrypts voice
recordings (AES-256-GCM, decrypted in memory as it streams).

Prints seconds of audio analysed per CPU second, the peak memory Python allocated during the
analysis (tracemalloc, numpy's buffers included) and the process' peak RSS growth, for 10 and
60 minutes: flat memory means the two peaks are close. The audio is a conversation of
alternating turns with overlaps and silences, written to a temporary file minute by minute so
the file itself never sits in memory.

Run: ``make bench-waveform`` (or ``.venv/bin/python bench/waveform.py --minutes 60``).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import tracemalloc
import wave
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django

django.setup()

import numpy as np  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402

from recordings.analysis.decoding import audio_from_body  # noqa: E402
from recordings.analysis.service import audio_analyse  # noqa: E402
from recordings.media import crypto  # noqa: E402
from recordings.media.body import MediaBody  # noqa: E402
from recordings.tests.analysis_fixtures import voice  # noqa: E402

RATE = 8000
CHUNK = 256 * 1024


def write_conversation(path: Path, minutes: int) -> None:
    """A dual-channel conversation: 8 s turns each way, 1 s overlaps, a 4 s silence a minute."""
    rng = np.random.default_rng(1)
    customer_voice = voice(8.0, f0=210.0)
    agent_voice = voice(8.0, f0=120.0, seed=1)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(RATE)
        for _ in range(minutes):
            minute = rng.normal(0, 16, size=(60 * RATE, 2))
            for start in range(0, 56, 15):  # customer 0-8, agent 7-15, ...; 56-60 silent
                first = start * RATE
                minute[first : first + 8 * RATE, 0] += 14000 * customer_voice
                agent_first = first + 7 * RATE
                agent_last = min(agent_first + 8 * RATE, 56 * RATE)
                minute[agent_first:agent_last, 1] += 14000 * agent_voice[: agent_last - agent_first]
            out.writeframes(np.clip(minute, -32768, 32767).astype("<i2").tobytes())


def file_chunks(path: Path, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    with path.open("rb") as handle:
        handle.seek(start)
        remaining = (end if end is not None else path.stat().st_size) - start
        while remaining > 0:
            chunk = handle.read(min(CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


def encrypt_file(plain: Path, target: Path) -> tuple[bytes, bytes]:
    """Twilio's voice format (AES-256-GCM, ciphertext || tag), streamed; the key and IV."""
    cek, iv = os.urandom(32), os.urandom(12)
    encryptor = Cipher(algorithms.AES(cek), modes.GCM(iv)).encryptor()
    with target.open("wb") as out:
        for chunk in file_chunks(plain):
            out.write(encryptor.update(chunk))
        out.write(encryptor.finalize() + encryptor.tag)
    return cek, iv


def plain_body(path: Path) -> MediaBody:
    size = path.stat().st_size
    return MediaBody(size, 0, size, "audio/wav", file_chunks(path), False)


def encrypted_body(path: Path, cek: bytes, iv: bytes) -> MediaBody:
    size = path.stat().st_size
    chunks = crypto.voice_decrypt_stream(
        cek, iv, lambda start, end: file_chunks(path, start, end), size
    )
    plaintext = crypto.voice_plaintext_length(size)
    return MediaBody(plaintext, 0, plaintext, "audio/wav", chunks, False)


def measure(label: str, seconds: float, make_body) -> None:
    before_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu = time.process_time()
    wall = time.perf_counter()
    result = audio_analyse(audio=audio_from_body(make_body()))
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_rss
    tracemalloc.start()
    audio_analyse(audio=audio_from_body(make_body()))
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    summary = result.speech["summary"]
    print(
        f"{label:<28} {seconds / cpu:8.0f} s audio / CPU s  ({cpu:5.2f} CPU s, {wall:5.2f} s wall)"
        f"  peak traced {traced_peak / 2**20:6.1f} MiB  RSS growth {rss_growth / 1024:6.1f} MiB"
        f"  segments {len(result.speech['segments'])}"
        f"  cross-talk {summary['cross_talk_seconds']:.0f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=60)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for minutes in sorted({10, arguments.minutes}):
            plain = Path(folder) / f"call-{minutes}.wav"
            sealed = Path(folder) / f"call-{minutes}.wav.enc"
            write_conversation(plain, minutes)
            cek, iv = encrypt_file(plain, sealed)
            size = plain.stat().st_size / 2**20
            print(f"-- {minutes} min dual-channel 8 kHz WAV ({size:.0f} MiB)")
            seconds = minutes * 60.0
            measure(f"plain, {minutes} min", seconds, lambda p=plain: plain_body(p))
            measure(
                f"encrypted, {minutes} min",
                seconds,
                lambda s=sealed, k=cek, i=iv: encrypted_body(s, k, i),
            )


if __name__ == "__main__":
    main()
