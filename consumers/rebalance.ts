// Cooperative rebalances of the key-parallel consumer. An assigned partition starts with fresh
// progress. A revoked partition first commits its finished prefix (synchronously: the new owner
// starts from what this member acknowledged), then its in-flight work is aborted — not merely
// abandoned — so the old and the new owner do not score the same event at once, and its later
// completions are never committed by this member.
import { commitDueSync, partitionKey, type CommitTransport, type TopicPartitionOffset } from './offset-commits.js';
import { PartitionProgress } from './partition-progress.js';

export interface TopicPartition {
  topic: string;
  partition: number;
}

export function assignPartitions(partitions: Map<string, PartitionProgress>, assignment: TopicPartition[]): void {
  for (const tp of assignment) partitions.set(partitionKey(tp.topic, tp.partition), new PartitionProgress());
}

/** Commits the revoked partitions' finished prefix, aborts their work and forgets them. */
export function revokePartitions(
  partitions: Map<string, PartitionProgress>,
  assignment: TopicPartition[],
  transport: CommitTransport,
  callbacks: { onAcknowledged: (offset: TopicPartitionOffset) => void; onFailed: (error: unknown) => void },
): void {
  const revoked: [string, PartitionProgress][] = [];
  for (const tp of assignment) {
    const key = partitionKey(tp.topic, tp.partition);
    const progress = partitions.get(key);
    if (progress) revoked.push([key, progress]);
  }
  commitDueSync(revoked, transport, callbacks.onAcknowledged, callbacks.onFailed);
  for (const [key, progress] of revoked) {
    progress.revoke();
    partitions.delete(key);
  }
}
