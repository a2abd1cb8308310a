// One partition's progress: its in-flight offsets in arrival order, the next offset that may be
// committed (past every completed offset at the head), the offset the broker acknowledged, and
// the abort signal of its work (fired when the partition is revoked, so a member that lost a
// partition stops working on it instead of racing the new owner).
import { setMaxListeners } from 'node:events';

/** How much work one partition may have in flight before it is paused. */
export interface InFlightLimits {
  messages: number;
  bytes: number;
}

export class PartitionProgress {
  private readonly queue: number[] = [];
  private head = 0;
  private readonly done = new Set<number>();
  private readonly timestamps = new Map<number, number>();
  private readonly sizes = new Map<number, number>();
  private bytes = 0;
  /** The offset to commit next (Kafka semantics: the next offset to read), once it has moved. */
  commitable: number | undefined;
  /** The last offset the broker acknowledged for this member. */
  committed: number | undefined;
  /** An offset sent in a commit that has not been acknowledged yet. */
  committing: number | undefined;
  revoked = false;
  paused = false;
  private readonly controller = new AbortController();

  constructor() {
    // Every in-flight handler of the partition listens to it (through AbortSignal.any).
    setMaxListeners(0, this.controller.signal);
  }

  /** Fired when the partition is revoked: its in-flight work stops and is left to the new owner. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  revoke(): void {
    this.revoked = true;
    this.controller.abort();
  }

  /** `bytes`: the message's size (value, key, headers), held until its handler is done. */
  add(offset: number, timestamp: number, bytes = 0): void {
    this.queue.push(offset);
    this.timestamps.set(offset, timestamp);
    if (bytes > 0) {
      this.sizes.set(offset, bytes);
      this.bytes += bytes;
    }
  }

  complete(offset: number): void {
    const size = this.sizes.get(offset);
    if (size !== undefined) {
      this.bytes -= size;
      this.sizes.delete(offset);
    }
    this.done.add(offset);
    while (this.head < this.queue.length && this.done.has(this.queue[this.head] as number)) {
      const finished = this.queue[this.head] as number;
      this.done.delete(finished);
      this.timestamps.delete(finished);
      this.head++;
      this.commitable = finished + 1;
    }
    // Compact the consumed prefix now and then.
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }

  /**
   * The offset a commit should carry now, or undefined when there is nothing new to commit.
   * `resend`: also when an unacknowledged commit of it is under way (a synchronous commit that
   * must not rely on it).
   */
  due(resend = false): number | undefined {
    if (this.revoked || this.commitable === undefined) return undefined;
    if (this.commitable === this.committed || (!resend && this.commitable === this.committing)) return undefined;
    return this.commitable;
  }

  /** The broker acknowledged `offset`. */
  acknowledged(offset: number): void {
    if (this.committing === offset) this.committing = undefined;
    if (this.committed === undefined || offset > this.committed) this.committed = offset;
  }

  /** The commit of `offset` failed: the next commit round sends it again. */
  commitFailed(offset: number): void {
    if (this.committing === offset) this.committing = undefined;
  }

  inFlight(): number {
    return this.queue.length - this.head;
  }

  /** Bytes of the messages whose handlers are not done yet. */
  inFlightBytes(): number {
    return this.bytes;
  }

  /** Whether to pause the partition: `limits.messages` or `limits.bytes` in flight. */
  full(limits: InFlightLimits): boolean {
    return this.inFlight() >= limits.messages || this.bytes >= limits.bytes;
  }

  /** Whether a paused partition may resume: in flight back to half of both limits. */
  drained(limits: InFlightLimits): boolean {
    return this.inFlight() <= limits.messages / 2 && this.bytes <= limits.bytes / 2;
  }

  /** Timestamp of the oldest message not yet completed, for time lag. */
  oldestPendingTimestamp(): number | undefined {
    const offset = this.queue[this.head];
    return offset === undefined ? undefined : this.timestamps.get(offset);
  }

  lastSeenOffset(): number | undefined {
    return this.queue[this.queue.length - 1];
  }
}
