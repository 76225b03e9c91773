#!/usr/bin/env python3
"""A stand-in for `arecord`, for tests without a microphone. Standard library only.

    fake_arecord.py -l                      print a capture device listing
    fake_arecord.py -t raw -D DEV -f S16_LE -r RATE -c CH [faults]

The listing is the file named by FAKE_ARECORD_LIST, or a realistic two-card listing with an
AudioMoth. When FAKE_ARECORD_LIST is set, recording checks that `-D` names a listed card
(`CARD=<id>` or `hw:<n>`) and, like the real thing when a USB microphone is pulled, exits
with a read error once the card disappears from the listing.

Audio is a ramp: frame `k` holds the int16 value `k` (wrapping), on every channel, written
at real rate by the clock, so a reader can check continuity and see exactly what was lost
(`--signal hash`: a noise-like function of `k` instead, unlike any file on disk).

Faults (each fires once per process; with --once FILE, only in the first process):
  --stall-after S --stall-for D   write nothing for D seconds and drop those frames (an xrun),
                                  reporting "overrun!!!" on stderr like arecord does
  --freeze-after S                stop writing but stay alive (a hung device)
  --wedge-after S                 report a read error, close stdout and never exit, ignoring
                                  SIGTERM (a USB driver stuck in close; only SIGKILL ends it)
  --exit-after S [--exit-code N]  exit with a read error
  --kill-after S                  SIGKILL itself
  --pid-file FILE                 write the process id there
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from array import array
from pathlib import Path

DEFAULT_LISTING = """\
**** List of CAPTURE Hardware Devices ****
card 0: PCH [HDA Intel PCH], device 0: ALC3246 Analog [ALC3246 Analog]
  Subdevices: 1/1
  Subdevice #0: subdevice #0
card 1: AudioMoth [AudioMoth], device 0: USB Audio [USB Audio]
  Subdevices: 1/1
  Subdevice #0: subdevice #0
"""


def listing() -> str:
    path = os.environ.get("FAKE_ARECORD_LIST")
    return Path(path).read_text() if path else DEFAULT_LISTING


def device_present(device: str) -> bool:
    if not os.environ.get("FAKE_ARECORD_LIST"):
        return True
    text = listing()
    if "CARD=" in device:
        card = device.split("CARD=", 1)[1].split(",", 1)[0]
        return any(line.startswith("card ") and f": {card} [" in line for line in text.splitlines())
    if device.startswith(("hw:", "plughw:")):
        num = device.split(":", 1)[1].split(",", 1)[0]
        return f"card {num}:" in text
    return True


def ramp(first: int, frames: int, channels: int, hashed: bool = False) -> bytes:
    if hashed:  # noise-like, yet a function of the frame number
        values = [((k * 2654435761) >> 16) & 0xFFFF for k in range(first, first + frames)]
    else:
        values = [k & 0xFFFF for k in range(first, first + frames)]
    data = array("h", [v - 65536 if v >= 32768 else v for v in values])
    if channels > 1:
        data = array("h", [v for v in data for _ in range(channels)])
    if sys.byteorder != "little":
        data.byteswap()
    return data.tobytes()


def wedge() -> None:
    """Close the audio output and hang forever, deaf to SIGTERM (stderr stays open)."""
    print("arecord: pcm_read:2221: read error: Input/output error", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stdout.flush()
    os.close(sys.stdout.fileno())
    while True:
        time.sleep(3600)


def main() -> int:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-l", action="store_true")
    p.add_argument("-t", default="wav")
    p.add_argument("-D", default="default")
    p.add_argument("-f", default="U8")
    p.add_argument("-r", type=int, default=8000)
    p.add_argument("-c", type=int, default=1)
    p.add_argument("-q", action="store_true")
    p.add_argument("--period", type=float, default=0.05)
    p.add_argument("--signal", choices=["ramp", "hash"], default="ramp")
    p.add_argument("--stall-after", type=float)
    p.add_argument("--stall-for", type=float, default=1.0)
    p.add_argument("--freeze-after", type=float)
    p.add_argument("--wedge-after", type=float)
    p.add_argument("--exit-after", type=float)
    p.add_argument("--exit-code", type=int, default=1)
    p.add_argument("--kill-after", type=float)
    p.add_argument("--once")
    p.add_argument("--pid-file")
    a = p.parse_args()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda num, _: sys.exit(f"Aborted by signal {signal.strsignal(num)}..."))
    if a.l:
        text = listing()
        if "card " not in text:
            print("arecord: device_list:274: no soundcards found...", file=sys.stderr)
            return 1
        sys.stdout.write(text)
        return 0
    if a.t != "raw" or a.f != "S16_LE":
        print("fake arecord: only -t raw -f S16_LE", file=sys.stderr)
        return 2
    if not device_present(a.D):
        print("arecord: main:831: audio open error: No such file or directory", file=sys.stderr)
        return 1
    if a.pid_file:
        Path(a.pid_file).write_text(str(os.getpid()))
    faults = True
    if a.once:
        faults = not Path(a.once).exists()
        Path(a.once).touch()
    print(
        f"Recording raw data 'stdin' : Signed 16 bit Little Endian, Rate {a.r} Hz, "
        f"{'Mono' if a.c == 1 else 'Stereo'}",
        file=sys.stderr,
        flush=True,
    )
    out = sys.stdout.buffer
    t0 = time.monotonic()
    written = 0  # frames on the clock so far (lost ones included)
    stalled = frozen = False
    while True:
        time.sleep(a.period)
        elapsed = time.monotonic() - t0
        due = int(elapsed * a.r)
        if faults and a.kill_after is not None and elapsed >= a.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        if faults and a.wedge_after is not None and elapsed >= a.wedge_after:
            wedge()
        if faults and a.exit_after is not None and elapsed >= a.exit_after:
            print("arecord: pcm_read:2221: read error: Input/output error", file=sys.stderr)
            return int(a.exit_code)
        if not device_present(a.D):
            print("arecord: pcm_read:2221: read error: No such device", file=sys.stderr)
            return 1
        if faults and a.freeze_after is not None and elapsed >= a.freeze_after:
            frozen = True
        if frozen:
            continue
        if faults and not stalled and a.stall_after is not None and elapsed >= a.stall_after:
            stalled = True
            time.sleep(a.stall_for)
            lost = int((time.monotonic() - t0) * a.r) - written
            written += lost
            print(
                f"overrun!!! (at least {1000 * lost / a.r:.3f} ms long)",
                file=sys.stderr,
                flush=True,
            )
            continue
        if due > written:
            try:
                out.write(ramp(written, due - written, a.c, a.signal == "hash"))
                out.flush()
            except BrokenPipeError:
                return 0
            written = due


if __name__ == "__main__":
    raise SystemExit(main())
