"""Streaming a recording's audio as blocks of 16-bit samples, in flat memory.

**Why soundfile (libsndfile) with numpy.** Twilio stores voice recordings as WAV (16-bit PCM,
8 kHz, one or two channels); libsndfile reads WAV in every variant (PCM widths, float, mu-law
and A-law, WAVE_FORMAT_EXTENSIBLE) and MP3, and soundfile hands its blocks to numpy without
copying sample by sample in Python. Parsing RIFF ourselves would cover the common case and
quietly misread the rest.

**Why a forward-only reader instead of a temporary file.** The audio comes from
``recordings.media.opener.media_open``, the same reader the player uses: plain files from S3 or
the local folder, Twilio's encrypted voice recordings decrypted chunk by chunk in memory, media
still at Twilio proxied. Nothing decrypted is ever written anywhere. libsndfile wants a seekable
file, but on a WAV it only seeks to learn the size (known from the media body), to skip over the
data chunk looking for trailing chunks (a read at the end answers nothing), and back into the
header: :class:`MediaStream` keeps the first ``HEAD_BYTES`` to answer those seeks and otherwise
reads forward, hashing the bytes in order so the media's SHA-256 costs no second read. A layout
that would need a seek backwards past the kept head is refused (:class:`UnsupportedAudio`)
rather than served by reading the file twice.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soundfile

from recordings.media.body import MediaBody, MediaError
from recordings.media.opener import media_open
from recordings.models import Recording

HEAD_BYTES = 64 * 1024
BLOCK_SECONDS = 10


class UnsupportedAudio(Exception):
    """The media is not audio this analysis can read (format, layout, sample rate)."""


class MediaStream(io.RawIOBase):
    """A read-only, forward-only file over a media body's chunks (see the module docstring)."""

    def __init__(self, body: MediaBody) -> None:
        super().__init__()
        self._chunks = body.chunks
        self._size = body.size
        self._head = bytearray()  # the first HEAD_BYTES, kept for libsndfile's header seeks
        self._pending = b""  # read from the body, not yet handed out
        self._consumed = 0  # bytes taken from the body so far
        self._position = 0
        self._digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(base + offset, 0)
        return self._position

    def _pull(self) -> bool:
        """Take the next chunk from the body; False at its end."""
        for chunk in self._chunks:
            if chunk:
                self._digest.update(chunk)
                if len(self._head) < HEAD_BYTES:
                    self._head += chunk[: HEAD_BYTES - len(self._head)]
                self._pending += chunk
                self._consumed += len(chunk)
                return True
        return False

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), max(self._size - self._position, 0))
        out = bytearray()
        while len(out) < wanted:
            pending_start = self._consumed - len(self._pending)
            missing = wanted - len(out)
            if self._position < pending_start:
                # Behind what is pending: only the kept head can answer.
                if self._position >= len(self._head):
                    raise UnsupportedAudio("this file's layout needs a second read; not analysed")
                end = min(len(self._head), pending_start, self._position + missing)
                piece = bytes(self._head[self._position : end])
            elif self._position >= self._consumed:
                # Ahead of everything read: skip forward (never on a WAV's audio).
                self._pending = b""
                if not self._pull():
                    break
                continue
            else:
                self._pending = self._pending[self._position - pending_start :]
                piece = self._pending[:missing]
            out += piece
            self._position += len(piece)
        buffer[: len(out)] = out
        return len(out)

    def sha256(self) -> str:
        """SHA-256 of the whole media, reading what is left of it first (trailing chunks)."""
        while self._pull():
            self._pending = b""
        if self._consumed != self._size:
            raise MediaError(f"read {self._consumed} bytes of a {self._size}-byte file")
        return self._digest.hexdigest()


@dataclass
class Audio:
    """An open recording: its format, and its samples block by block (``frames x channels``
    int16). ``sha256`` is known once every block was read."""

    sample_rate: int
    channels: int
    frames: int
    blocks: Iterator[np.ndarray]
    stream: MediaStream = field(repr=False)

    def sha256(self) -> str:
        """The media's SHA-256 (after the blocks were read)."""
        return self.stream.sha256()


def audio_open(*, recording: Recording, block_seconds: int = BLOCK_SECONDS) -> Audio:
    """Open a recording's audio for analysis, streaming and decrypted in memory.

    Raises ``MediaError`` (from the opener) when the media cannot be read, and
    :class:`UnsupportedAudio` when it is not audio libsndfile can decode.
    """
    return audio_from_body(media_open(recording=recording), block_seconds=block_seconds)


def audio_from_body(body: MediaBody, *, block_seconds: int = BLOCK_SECONDS) -> Audio:
    """Decode an opened media body (see :func:`audio_open`)."""
    stream = MediaStream(body)
    try:
        sound = soundfile.SoundFile(stream)
    except soundfile.LibsndfileError as exc:
        raise UnsupportedAudio(f"not audio the analysis can decode ({exc.error_string})") from None
    if sound.channels < 1 or sound.samplerate < 1:
        raise UnsupportedAudio("the file announces no channels or no sample rate")

    def blocks() -> Iterator[np.ndarray]:
        with sound:
            blocksize = sound.samplerate * block_seconds
            yield from sound.blocks(blocksize=blocksize, dtype="int16", always_2d=True)

    return Audio(sound.samplerate, sound.channels, sound.frames, blocks(), stream)
