"""YAMNet float (the int8 graph dequantised) against int8: speed, ties and top-1 agreement.

    .venv/bin/python -m benchmarks.yamnet_precision_bench [--dir YAMNET_DIR] [--folder DIR]

Audio: 1-second windows of generated sound (espeak-ng sentences, tones from 250 Hz to 8 kHz,
white noise at several levels, a Great Tit-like song, silence, and speech mixed with noise
or a tone), or of the audio files under `--folder` (any rate, mono-mixed, resampled to
16 kHz). Speed: ms per window through `scores` (features + model + sigmoid), batches of 8,
one thread, best of 3 passes, both precisions in the same run; with `--birdnet DIR`, also
BirdNET's ms per 3 s window. Printed with the machine's load average (the figures of a
shared machine move with it).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from services.inference.backends import limit_blas_threads
from services.inference.backends.yamnet import YamNet
from services.inference.settings import default_yamnet_dir

RATE = 16_000
SENTENCES = (
    "Good morning. The next train to the city centre leaves in five minutes.",
    "Please mind the gap between the train and the platform.",
    "The weather today will be cloudy with some sunny spells in the afternoon.",
    "Could you tell me the way to the library, please?",
    "Twenty three, forty seven, one hundred and six.",
)


def generated() -> np.ndarray:
    """(n, 16000) windows of generated sound."""
    from tests.support.audio import speech, tone, white_noise
    from tests.support.birdsong import great_tit_song

    clips = [speech(s) for s in SENTENCES]
    clips += [tone(f, 2.0, amplitude=a) for f in (250, 500, 1000, 2000, 4000, 8000)
              for a in (0.5, 0.05)]  # fmt: skip
    clips += [white_noise(2.0, rms=r, seed=i) for i, r in enumerate((0.3, 0.1, 0.03, 0.01))]
    clips += [great_tit_song(3.0, RATE), np.zeros(2 * RATE, np.float32)]
    voice = np.concatenate([speech(s) for s in SENTENCES[:2]])
    clips += [voice + white_noise(len(voice) / RATE, rms=0.05, seed=9)]
    clips += [voice + tone(1000, len(voice) / RATE, amplitude=0.1)[: len(voice)]]
    return windows(clips)


def from_folder(folder: Path) -> np.ndarray:
    import soundfile

    from services.inference.core import resample

    clips = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in {".wav", ".flac", ".ogg"}:
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
            clips.append(resample(data.mean(axis=1), rate, RATE))
    return windows(clips)


def windows(clips: list[np.ndarray]) -> np.ndarray:
    out = [c[i : i + RATE] for c in clips for i in range(0, len(c) - RATE + 1, RATE)]
    return np.stack(out).astype(np.float32)


def ties(scores: np.ndarray) -> tuple[int, int]:
    """Windows with a tie inside their top 5, and windows whose top-1 is tied."""
    top = -np.sort(-scores, axis=1)[:, :6]
    in_top5 = int(sum(len(set(row[:5].tolist())) < 5 for row in top))
    top1 = int(np.sum(top[:, 0] == top[:, 1]))
    return in_top5, top1


def speed(model: YamNet, audio: np.ndarray) -> float:
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        for i in range(0, len(audio), 8):
            model.scores(list(audio[i : i + 8]))
        best = min(best, (time.perf_counter() - began) * 1000 / len(audio))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dir", type=Path, default=default_yamnet_dir())
    p.add_argument("--folder", type=Path, help="audio files instead of generated sound")
    p.add_argument("--birdnet", type=Path, help="also time BirdNET from this model folder")
    args = p.parse_args()
    limit_blas_threads()
    audio = from_folder(args.folder) if args.folder else generated()
    f = YamNet.from_folder(args.dir, 1, precision="float")
    q = YamNet.from_folder(args.dir, 1, precision="int8")
    sf, sq = f.scores(list(audio)), q.scores(list(audio))
    top_f, top_q = sf.argmax(axis=1), sq.argmax(axis=1)
    five_f = np.argsort(-sf, axis=1)[:, :5]
    five_q = np.argsort(-sq, axis=1)[:, :5]
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(five_f, five_q, strict=True)])
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"windows: {len(audio)} of 1 s ({'files' if args.folder else 'generated'})")
    print(f"top-1 agreement float vs int8: {np.mean(top_f == top_q):.1%}")
    print(f"top-5 overlap   float vs int8: {overlap:.1%}")
    for name, scores in (("float", sf), ("int8", sq)):
        in5, in1 = ties(scores)
        print(f"{name:5}: windows with a tie in the top 5: {in5}, tied top-1: {in1}")
    print(f"ms per window, one thread, batches of 8: float {speed(f, audio):.2f}, "
          f"int8 {speed(q, audio):.2f}")  # fmt: skip
    if args.birdnet:
        birdnet_speed(args.birdnet)


def birdnet_speed(folder: Path) -> None:
    """ms per 3 s BirdNET window (48 kHz, scores only), one thread, batches of 1 and 8."""
    from services.inference.backends.birdnet import BirdNet
    from tests.support.birdsong import great_tit_song

    model = BirdNet.from_folder(folder, 1)
    song = great_tit_song(3.0, 48_000)
    for batch in (1, 8):
        model.scores([song] * batch)  # allocate for this batch size first
        best = float("inf")
        for _ in range(3):
            began = time.perf_counter()
            model.scores([song] * batch)
            best = min(best, (time.perf_counter() - began) * 1000 / batch)
        print(f"BirdNET ms per 3 s window, one thread, batch {batch}: {best:.1f}")


if __name__ == "__main__":
    main()
