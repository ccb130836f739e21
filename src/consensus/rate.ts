/**
 * Counts over a sliding time window: `add(at, n)` records n things at time `at` (ms, non-decreasing),
 * `perSecond(now)` is what was recorded in the last `windowMs`, per second. Each record leaves the window
 * once, so both are O(1) on average.
 */
export class RateWindow {
  private readonly log: { at: number; n: number }[] = [];
  private head = 0;
  private inWindow = 0;

  constructor(readonly windowMs: number) {
    if (!(windowMs > 0)) throw new RangeError(`RateWindow: windowMs must be > 0 (got ${windowMs})`);
  }

  add(at: number, n: number): void {
    if (n <= 0) return;
    this.log.push({ at, n });
    this.inWindow += n;
    // Times never go back, so what left the window at `at` has left it for every later read too. Trimmed
    // here as well: until 2026-12-07 only perSecond trimmed, and a log that was only added to (a backup's
    // replica adds every batch it executes, and only a primary reads its rate) kept every record.
    this.forget(at);
  }

  perSecond(now: number): number {
    this.forget(now);
    return (1000 * this.inWindow) / this.windowMs;
  }

  /** Drops the records older than `now` − windowMs. */
  private forget(now: number): void {
    const since = now - this.windowMs;
    while (this.head < this.log.length && this.log[this.head].at < since)
      this.inWindow -= this.log[this.head++].n;
    // Drop the consumed front now and then, not at every call.
    if (this.head > 1024 && this.head * 2 > this.log.length) {
      this.log.splice(0, this.head);
      this.head = 0;
    }
  }
}
