// Offset commits of the key-parallel consumer. A partition's position counts as committed only
// once the broker acknowledged it: a commit lost to a rebalance or a broken connection is sent
// again on the next round instead of being taken for done. A commit the broker never answers
// (a frozen or dead broker) counts as failed after a bound, so it cannot hold later commits back.
import type { PartitionProgress } from './partition-progress.js';

export interface TopicPartitionOffset {
  topic: string;
  partition: number;
  offset: number;
}

/** How commits reach the broker. */
export interface CommitTransport {
  /**
   * `done` runs with the broker's answer (not when the commit is merely queued). Returns how to
   * stop waiting for that answer (a commit given up on after its bound).
   */
  commitAsync(offsets: TopicPartitionOffset[], done: (error: unknown) => void): () => void;
  /** Throws when the broker does not acknowledge. */
  commitSync(offsets: TopicPartitionOffset[]): void;
}

export const partitionKey = (topic: string, partition: number): string => `${topic}|${partition}`;

export function parsePartitionKey(key: string): { topic: string; partition: number } {
  const at = key.lastIndexOf('|');
  return { topic: key.slice(0, at), partition: Number(key.slice(at + 1)) };
}

/** What is due in `partitions`, marked as being committed. */
function collectDue(partitions: Iterable<[string, PartitionProgress]>, resend = false): { offsets: TopicPartitionOffset[]; progress: PartitionProgress[] } {
  const offsets: TopicPartitionOffset[] = [];
  const progress: PartitionProgress[] = [];
  for (const [key, p] of partitions) {
    const offset = p.due(resend);
    if (offset === undefined) continue;
    offsets.push({ ...parsePartitionKey(key), offset });
    progress.push(p);
  }
  return { offsets, progress };
}

/** What a commit that got no answer within its bound counts as. */
export class CommitUnansweredError extends Error {
  constructor(ms: number) {
    super(`the broker did not answer the offset commit within ${ms} ms`);
    this.name = 'CommitUnansweredError';
  }
}

/**
 * Sends one asynchronous commit of everything due; bookkeeping happens in the acknowledgement.
 * Resolves when the broker answered (true: acknowledged, false: failed or nothing was due), or
 * after `timeoutMs` without an answer (false: failed, sent again by the next round; an answer that
 * comes later is ignored).
 */
export function commitDueAsync(
  partitions: Iterable<[string, PartitionProgress]>,
  transport: CommitTransport,
  onAcknowledged: (offset: TopicPartitionOffset) => void,
  onFailed: (error: unknown) => void,
  timeoutMs = 30_000,
): Promise<boolean> {
  const { offsets, progress } = collectDue(partitions);
  if (offsets.length === 0) return Promise.resolve(false);
  progress.forEach((p, i) => (p.committing = offsets[i]?.offset));
  return new Promise((resolve) => {
    let settled = false;
    let stopWaiting: (() => void) | undefined;
    const timer = setTimeout(() => settle(new CommitUnansweredError(timeoutMs)), timeoutMs);
    const settle = (error: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stopWaiting?.();
      progress.forEach((p, i) => {
        const offset = offsets[i]?.offset as number;
        if (error) p.commitFailed(offset);
        else p.acknowledged(offset);
      });
      if (error) onFailed(error);
      else offsets.forEach(onAcknowledged);
      resolve(!error);
    };
    try {
      stopWaiting = transport.commitAsync(offsets, settle);
      if (settled) stopWaiting(); // answered before commitAsync returned
    } catch (error) {
      settle(error);
    }
  });
}

/** Commits everything due and waits for the broker (on revocation and at shutdown). */
export function commitDueSync(
  partitions: Iterable<[string, PartitionProgress]>,
  transport: CommitTransport,
  onAcknowledged: (offset: TopicPartitionOffset) => void,
  onFailed: (error: unknown) => void,
): boolean {
  const { offsets, progress } = collectDue(partitions, true);
  if (offsets.length === 0) return true;
  try {
    transport.commitSync(offsets);
  } catch (error) {
    progress.forEach((p, i) => p.commitFailed(offsets[i]?.offset as number));
    onFailed(error);
    return false;
  }
  progress.forEach((p, i) => p.acknowledged(offsets[i]?.offset as number));
  offsets.forEach(onAcknowledged);
  return true;
}
