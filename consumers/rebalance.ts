// Cooperative rebalances of the key-parallel consumer. An assigned partition starts with fresh
// progress. A revoked partition first commits its finished prefix (synchronously: the new owner
// starts from what this member acknowledged), then its in-flight work is aborted — not merely
// abandoned — so the old and the new owner do not score the same event at once, and its later
// completions are never committed by this member. A LOST assignment (the session timed out or the
// coordinator is gone) is not committed: the partitions already belong to another member, the
// commit cannot succeed, and waiting for it would block the event loop for the session timeout;
// the new owner redelivers from the last commit, and handlers are idempotent.
import { commitDueSync, partitionKey, type CommitTransport, type TopicPartitionOffset } from './offset-commits.js';
import { PartitionProgress } from './partition-progress.js';

export interface TopicPartition {
  topic: string;
  partition: number;
}

export function assignPartitions(partitions: Map<string, PartitionProgress>, assignment: TopicPartition[]): void {
  for (const tp of assignment) partitions.set(partitionKey(tp.topic, tp.partition), new PartitionProgress());
}

/** Commits the revoked partitions' finished prefix (unless the assignment was lost), aborts their work and forgets them. */
export function revokePartitions(
  partitions: Map<string, PartitionProgress>,
  assignment: TopicPartition[],
  transport: CommitTransport,
  callbacks: { lost?: boolean; onAcknowledged: (offset: TopicPartitionOffset) => void; onFailed: (error: unknown) => void },
): void {
  const revoked: [string, PartitionProgress][] = [];
  for (const tp of assignment) {
    const key = partitionKey(tp.topic, tp.partition);
    const progress = partitions.get(key);
    if (progress) revoked.push([key, progress]);
  }
  if (!callbacks.lost) commitDueSync(revoked, transport, callbacks.onAcknowledged, callbacks.onFailed);
  for (const [key, progress] of revoked) {
    progress.revoke();
    partitions.delete(key);
  }
}
