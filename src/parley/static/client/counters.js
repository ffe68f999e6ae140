/**
 * The client-side invariant counters of docs/realtime.md, per transport: totals for stats(),
 * and the deltas not yet sent with POST /v1/stream/report.
 */

export const COUNTERS = [
  "ack_without_receipt_10s",
  "timeline_duplicate_detected",
  "read_rollback_detected",
  "forced_resyncs",
  "full_state_loads",
];
const SAMPLES_KEPT = 1000; // write_receipt_ms samples kept per transport for stats()

const zero = () => ({ ...Object.fromEntries(COUNTERS.map((name) => [name, 0])), write_receipt_ms: [] });

export class Counters {
  #totals = {}; // transport -> {counter: n, write_receipt_ms: [...]}
  #unreported = {}; // transport -> the same, since the last report

  count(transport, name) {
    (this.#totals[transport] ??= zero())[name] += 1;
    (this.#unreported[transport] ??= zero())[name] += 1;
  }

  recordReceiptMs(transport, ms) {
    const kept = (this.#totals[transport] ??= zero()).write_receipt_ms;
    kept.push(ms);
    if (kept.length > SAMPLES_KEPT) kept.shift();
    (this.#unreported[transport] ??= zero()).write_receipt_ms.push(ms);
  }

  /** Totals over all transports, all samples, and the same per transport. */
  snapshot() {
    const totals = zero();
    const byTransport = {};
    for (const [transport, counts] of Object.entries(this.#totals)) {
      byTransport[transport] = { ...counts, write_receipt_ms: [...counts.write_receipt_ms] };
      for (const name of COUNTERS) totals[name] += counts[name];
      totals.write_receipt_ms.push(...counts.write_receipt_ms);
    }
    return { ...totals, by_transport: byTransport };
  }

  /**
   * Send each transport's deltas with `post(body)`; a delta whose post fails is kept for the
   * next report, unless `final` (the page is going away).
   */
  async report(post, { final }) {
    const pending = this.#unreported;
    this.#unreported = {};
    await Promise.all(
      Object.entries(pending).map(async ([transport, delta]) => {
        const counters = Object.fromEntries(COUNTERS.map((name) => [name, delta[name]]));
        if (!Object.values(counters).some(Boolean) && delta.write_receipt_ms.length === 0) return;
        try {
          await post({ transport, counters, write_receipt_ms: delta.write_receipt_ms });
        } catch {
          if (final) return;
          const kept = (this.#unreported[transport] ??= zero());
          for (const name of COUNTERS) kept[name] += counters[name];
          kept.write_receipt_ms.unshift(...delta.write_receipt_ms);
        }
      }),
    );
  }
}
