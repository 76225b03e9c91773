"""The sample clock: chunk times from sample counts, and lost samples from the wall clock (pure).

A live source delivers blocks of frames; each block is stamped, when it was read, with the
monotonic clock (for loss detection: immune to NTP steps) and the wall clock (for timestamps).
The time of frame `k` is `anchor_wall + k / rate`: the clock is anchored at the first block
(the block's first frame is taken to have been captured `frames / rate` before it was read).

Loss detection compares the sample clock with the monotonic clock at reads that drained the
pipe ("caught up": the data is fresh, so the only latency left is one ALSA period or so):

    lag = mono - (anchor_mono + frames / rate)

Latency makes `lag` jitter by a period; a slow sample clock (ppm drift) makes it creep. The
creep is followed by a slow average (`baseline`); a sudden rise of more than `tolerance` above
it means samples were lost (an xrun, a stalled pipe): the lost frames are added to the frame
count, so the following chunks keep true times, and the loss is reported. When the drift
itself exceeds `drift_limit`, the clock is re-anchored (a "resync", not a loss). When the wall
clock jumps relative to the monotonic clock (NTP step on a Pi without RTC), the wall anchor
follows it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClockCheck:
    """What the clock saw at one block."""

    block_start: float
    """Wall time of the block's first frame, Unix seconds."""
    lost_frames: int = 0
    """Frames lost just before this block (a gap), at the clock's rate."""
    shift: float = 0.0
    """Seconds the timeline moved without loss (wall clock step or drift resync); 0 if none."""
    reason: str = ""
    """Why the timeline is discontinuous at this block, in words; empty when it is not."""
    restarted: bool = False
    """True for the first block after the source stopped and started again (always a gap)."""

    @property
    def discontinuous(self) -> bool:
        """True when this block does not follow the previous one on the timeline."""
        return bool(self.lost_frames or self.shift or self.restarted)


class SampleClock:
    """Anchors a live sample count to wall time and detects lost samples."""

    def __init__(
        self,
        rate: int,
        tolerance: float = 0.25,
        drift_limit: float = 0.5,
        smoothing: float = 0.02,
    ) -> None:
        if rate <= 0 or tolerance <= 0 or drift_limit <= 0 or not 0 < smoothing <= 1:
            raise ValueError("rate, tolerance and drift_limit must be > 0, smoothing in (0, 1]")
        self.rate = rate
        self.tolerance = tolerance
        self.drift_limit = drift_limit
        self.smoothing = smoothing
        self.anchored = False
        self._anchor_mono = 0.0
        self._anchor_wall = 0.0
        self._frames = 0
        self._baseline = 0.0
        self._end_mono: float | None = None  # where the previous run of the source ended

    def time_of(self, frame: int) -> float:
        """Wall time of frame number `frame` since the anchor."""
        return self._anchor_wall + frame / self.rate

    @property
    def frames(self) -> int:
        """Frames on the timeline since the anchor, lost ones included."""
        return self._frames

    def next_time(self) -> float:
        """Wall time of the next frame."""
        return self.time_of(self._frames)

    def stop(self) -> None:
        """The source stopped (process exited): the next block re-anchors and counts the gap."""
        if self.anchored:
            self._end_mono = self._anchor_mono + self._frames / self.rate + self._baseline
        self.anchored = False

    def advance(self, frames: int, mono: float, wall: float, caught_up: bool = True) -> ClockCheck:
        """Account for a block of `frames` frames read at `mono`/`wall` seconds."""
        if frames < 0:
            raise ValueError("frames must be >= 0")
        if not self.anchored:
            return self._anchor(frames, mono, wall)
        shift = 0.0
        reasons = []
        # Wall clock stepped relative to the monotonic clock: follow it, nothing was lost.
        step = (wall - self._anchor_wall) - (mono - self._anchor_mono)
        if abs(step) > self.tolerance:
            self._anchor_wall += step
            shift += step
            reasons.append(f"wall clock stepped by {step:+.3f} s")
        lost = 0
        if caught_up:
            lag = mono - self._anchor_mono - (self._frames + frames) / self.rate
            jump = lag - self._baseline
            if jump > self.tolerance:
                lost = round(jump * self.rate)
                self._frames += lost
                reasons.append(f"{lost / self.rate:.3f} s of samples lost")
            elif jump < -self.tolerance:
                # Data arrived sooner than the clock allows: the anchor was late. Move it.
                self._anchor_mono += jump
                self._anchor_wall += jump
                shift += jump
                reasons.append(f"sample clock ahead by {-jump:.3f} s, re-anchored")
            else:
                self._baseline += self.smoothing * jump
                if abs(self._baseline) > self.drift_limit:
                    drift = self._baseline
                    self._anchor_mono += drift
                    self._anchor_wall += drift
                    self._baseline = 0.0
                    shift += drift
                    reasons.append(f"sample clock drifted {drift:+.3f} s from wall time, resynced")
        check = ClockCheck(self.next_time(), lost, shift, "; ".join(reasons))
        self._frames += frames
        return check

    def _anchor(self, frames: int, mono: float, wall: float) -> ClockCheck:
        first_mono = mono - frames / self.rate
        lost = 0
        reason = ""
        restarted = self._end_mono is not None
        if self._end_mono is not None:
            lost = max(0, round((first_mono - self._end_mono) * self.rate))
            reason = f"source restarted, {lost / self.rate:.3f} s of samples lost"
            self._end_mono = None
        self._anchor_mono = first_mono
        self._anchor_wall = wall - frames / self.rate
        self._frames = frames
        self._baseline = 0.0
        self.anchored = True
        return ClockCheck(self._anchor_wall, lost, 0.0, reason, restarted)
