"""From speech flags per channel to talk, silence and cross-talk intervals and their summary.

**Which channel is who.** Twilio records dual-channel calls with the customer's leg on channel 1
and the agent's on channel 2 (Flex's ``conversations.media`` item says ``"channels":
["customer", "others"]``, and a ``<Dial>`` recording puts the parent call, the caller, first);
any further channel counts as the agent's side. A mono recording has no parties: its segments
are ``speech`` and ``silence`` only, and the party figures are left empty.

**Smoothing.** A party's pause shorter than ``MIN_PAUSE_MS`` (breathing, a stop consonant) is
part of their turn, and a burst shorter than ``MIN_SPEECH_MS`` (a click, a cough) is not a turn;
neither moves the edges of real turns or silences, which stay at the detector's 30 ms frames.

**Figures.** Talk ratio is a party's share of the time anyone spoke (cross-talk counts for both,
so the two ratios may add up to more than 1); silence and cross-talk ratios are shares of the
whole recording; an interruption is a party starting a turn while the other is in one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recordings.analysis.activity import FRAME_MS

MIN_PAUSE_MS = 300
MIN_SPEECH_MS = 90

AGENT, CUSTOMER, CROSS_TALK, SILENCE, SPEECH = (
    "agent",
    "customer",
    "cross_talk",
    "silence",
    "speech",
)
CHANNEL_ROLES = ("customer", "agent")


def _runs(values: np.ndarray) -> list[tuple[int, int, int]]:
    """``(start, end, value)`` of each run of equal values, ``end`` exclusive."""
    if not len(values):
        return []
    edges = np.flatnonzero(np.diff(values)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(values)]])
    return [(int(s), int(e), int(values[s])) for s, e in zip(starts, ends, strict=True)]


def smooth(flags: np.ndarray) -> np.ndarray:
    """One channel's flags with short pauses filled and short bursts dropped (see above)."""
    out = flags.copy()
    pause = MIN_PAUSE_MS // FRAME_MS
    burst = max(MIN_SPEECH_MS // FRAME_MS, 1)
    runs = _runs(out.astype(np.int8))
    for index, (start, end, value) in enumerate(runs):
        inner = 0 < index < len(runs) - 1
        if not value and inner and end - start < pause:
            out[start:end] = True
    for start, end, value in _runs(out.astype(np.int8)):
        if value and end - start < burst:
            out[start:end] = False
    return out


@dataclass(frozen=True)
class Speech:
    """The analysis of one recording's speech: segments and summary, as stored and answered."""

    segments: list[dict[str, Any]]
    summary: dict[str, Any]


def _seconds(frames: int) -> float:
    return round(frames * FRAME_MS / 1000, 3)


def speech_derive(*, flags: list[np.ndarray], duration_seconds: float) -> Speech:
    """Segments and summary from per-channel speech flags (one per ``FRAME_MS`` frame)."""
    count = min((len(f) for f in flags), default=0)
    channels = [smooth(f[:count]) for f in flags]
    duration = round(duration_seconds, 3)
    customer: np.ndarray | None = None
    agent: np.ndarray | None = None
    if len(channels) >= 2:
        customer = channels[0]
        agent = np.logical_or.reduce(channels[1:]) if len(channels) > 2 else channels[1]
        # 0 silence, 1 customer, 2 agent, 3 both
        classes = customer.astype(np.int8) + 2 * agent.astype(np.int8)
        names = {0: SILENCE, 1: CUSTOMER, 2: AGENT, 3: CROSS_TALK}
    else:
        classes = channels[0].astype(np.int8) if channels else np.empty(0, np.int8)
        names = {0: SILENCE, 1: SPEECH}

    segments: list[dict[str, Any]] = []
    for start, end, value in _runs(classes):
        stop = duration if end == count else min(_seconds(end), duration)
        segments.append({"start": _seconds(start), "end": stop, "kind": names[value]})
    if count == 0 and duration > 0:
        segments.append({"start": 0.0, "end": duration, "kind": SILENCE})

    def length(segment: dict[str, Any]) -> float:
        return float(segment["end"]) - float(segment["start"])

    def total(kind: str) -> float:
        return round(sum(length(s) for s in segments if s["kind"] == kind), 3)

    silences = [length(s) for s in segments if s["kind"] == SILENCE]
    silence = total(SILENCE)
    summary: dict[str, Any] = {
        "duration_seconds": duration,
        "channels": len(flags),
        "silence_seconds": silence,
        "silence_ratio": round(silence / duration, 4) if duration else None,
        "longest_silence_seconds": round(max(silences), 3) if silences else 0.0,
        "agent_talk_seconds": None,
        "customer_talk_seconds": None,
        "agent_talk_ratio": None,
        "customer_talk_ratio": None,
        "cross_talk_seconds": None,
        "cross_talk_ratio": None,
        "interruptions": None,
        "interruptions_by_agent": None,
        "interruptions_by_customer": None,
    }
    if customer is not None and agent is not None:
        cross = total(CROSS_TALK)
        agent_talk = round(total(AGENT) + cross, 3)
        customer_talk = round(total(CUSTOMER) + cross, 3)
        spoken = agent_talk + customer_talk - cross
        by_agent = _interruptions(starter=agent, other=customer)
        by_customer = _interruptions(starter=customer, other=agent)
        summary.update(
            agent_talk_seconds=agent_talk,
            customer_talk_seconds=customer_talk,
            agent_talk_ratio=round(agent_talk / spoken, 4) if spoken else None,
            customer_talk_ratio=round(customer_talk / spoken, 4) if spoken else None,
            cross_talk_seconds=cross,
            cross_talk_ratio=round(cross / duration, 4) if duration else None,
            interruptions=by_agent + by_customer,
            interruptions_by_agent=by_agent,
            interruptions_by_customer=by_customer,
        )
    return Speech(segments=segments, summary=summary)


def _interruptions(*, starter: np.ndarray, other: np.ndarray) -> int:
    """Turns of ``starter`` that begin while ``other`` is already speaking."""
    onsets = np.flatnonzero(starter[1:] & ~starter[:-1]) + 1
    return int(np.count_nonzero(other[onsets - 1] & other[onsets])) if len(onsets) else 0
