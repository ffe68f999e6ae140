/** A conversation's timeline as the client holds it: messages by seq, and where the holes are. */

/** One conversation's messages by seq, and how far they run without a hole. */
export class Timeline {
  constructor(floor) {
    this.bySeq = new Map();
    this.fromStream = new Set(); // seqs the stream delivered: a second one is a duplicate
    this.contiguous = floor ?? null; // every seq in (base, contiguous] is present
    this.sorted = null;
    this.filling = null;
    this.fillTarget = 0;
  }

  /** Store a message; true if its seq is new here. A local copy never replaces a server one. */
  insert(message) {
    const had = this.bySeq.has(message.seq);
    if (had && message.local) return false;
    this.bySeq.set(message.seq, message);
    this.sorted = null;
    if (this.contiguous === null) this.contiguous = message.seq - 1;
    this.advance();
    return !had;
  }

  /**
   * Take a held message's new state (edited, deleted, reacted to); true if it changed what is
   * held. A message not held is left for history; nothing comes back from a tombstone, and an
   * older state (a change committed before one's own edit, whose answer was applied) is ignored.
   */
  update(message) {
    const held = this.bySeq.get(message.seq);
    if (!held || held.id !== message.id || held.deleted_at) return false;
    if (held.edited_at && !message.edited_at && !message.deleted_at) return false;
    if (JSON.stringify(held) === JSON.stringify(message)) return false;
    this.bySeq.set(message.seq, message);
    this.sorted = null;
    return true;
  }

  /** Accept everything up to `seq` as history, so a hole below it is no longer a gap. */
  rebase(seq) {
    if (this.contiguous === null || seq > this.contiguous) this.contiguous = seq;
    this.advance();
  }

  advance() {
    while (this.bySeq.has(this.contiguous + 1)) this.contiguous += 1;
  }

  messages() {
    this.sorted ??= [...this.bySeq.values()].sort((a, b) => a.seq - b.seq);
    return this.sorted;
  }
}
