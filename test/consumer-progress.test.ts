// The key-parallel consumer's bookkeeping on its own: contiguous progress, acknowledged commits,
// revocation. No broker: the commit transport is a recorder that answers like librdkafka does.
import { describe, expect, it } from '@jest/globals';
import {
  CommitUnansweredError,
  commitDueAsync,
  commitDueSync,
  partitionKey,
  type CommitTransport,
  type TopicPartitionOffset,
} from '../consumers/offset-commits.js';
import { PartitionProgress } from '../consumers/partition-progress.js';
import { assignPartitions, revokePartitions } from '../consumers/rebalance.js';

/** Records commits; answers each asynchronous commit with the next scripted error (or success). */
function recordingTransport(asyncErrors: unknown[] = [], syncErrors: Error[] = []) {
  const sent: { mode: 'async' | 'sync'; offsets: TopicPartitionOffset[] }[] = [];
  const transport: CommitTransport = {
    commitAsync(offsets, done) {
      sent.push({ mode: 'async', offsets });
      const error = asyncErrors.shift();
      setImmediate(() => done(error));
      return () => {};
    },
    commitSync(offsets) {
      sent.push({ mode: 'sync', offsets });
      const error = syncErrors.shift();
      if (error) throw error;
    },
  };
  return { transport, sent };
}

// What librdkafka reports for a commit that a rebalance overtook.
const rebalanceInProgress = Object.assign(new Error('Broker: Group rebalance in progress'), { code: 27 });
const noop = () => undefined;

describe('partition progress', () => {
  it('commits only past the contiguous completed prefix, whatever order offsets complete in', () => {
    const p = new PartitionProgress();
    for (const o of [10, 11, 12, 13]) p.add(o, 0);
    p.complete(12);
    p.complete(11);
    expect(p.commitable).toBeUndefined();
    p.complete(10);
    expect(p.commitable).toBe(13);
    expect(p.inFlight()).toBe(1);
    p.complete(13);
    expect(p.commitable).toBe(14);
  });

  it('finding: the in-flight bound counts bytes as well as messages: two 1 MB events fill a 2 MB partition, resumed when back to half', () => {
    const p = new PartitionProgress();
    const limits = { messages: 500, bytes: 2 * 1024 * 1024 };
    const mb = 1024 * 1024;
    p.add(1, 0, mb);
    expect(p.full(limits)).toBe(false);
    p.add(2, 0, mb);
    expect(p.full(limits)).toBe(true); // two messages, far below 500: paused on bytes
    expect(p.inFlightBytes()).toBe(2 * mb);
    // A handler that is done frees its bytes at once, even before the commit position moves past it.
    p.complete(2);
    expect(p.commitable).toBeUndefined();
    expect(p.inFlightBytes()).toBe(mb);
    expect(p.drained(limits)).toBe(true);
    p.add(3, 0, 10);
    expect(p.drained({ messages: 2, bytes: limits.bytes })).toBe(false); // two in flight: not down to half of 2
    p.complete(1);
    p.complete(3);
    expect(p.inFlightBytes()).toBe(0);
    expect(p.commitable).toBe(4);
  });

  it('revocation fires the partition’s abort signal', () => {
    const p = new PartitionProgress();
    expect(p.signal.aborted).toBe(false);
    p.revoke();
    expect(p.signal.aborted).toBe(true);
    expect(p.due()).toBeUndefined();
  });
});

describe('offset commits', () => {
  it('committed bookkeeping only after the broker acknowledges: a commit lost to a rebalance is sent again on the next round', async () => {
    const partitions = new Map([[partitionKey('t', 0), new PartitionProgress()]]);
    const p = partitions.get('t|0') as PartitionProgress;
    p.add(0, 0);
    p.complete(0);
    const { transport, sent } = recordingTransport([rebalanceInProgress]);
    const failures: unknown[] = [];
    expect(await commitDueAsync(partitions, transport, noop, (e) => failures.push(e))).toBe(false);
    expect(failures).toEqual([rebalanceInProgress]);
    expect(p.committed).toBeUndefined();
    // Nothing new completed, yet the next round must send offset 1 again.
    const acknowledged: TopicPartitionOffset[] = [];
    expect(await commitDueAsync(partitions, transport, (o) => acknowledged.push(o), noop)).toBe(true);
    expect(sent.map((s) => s.offsets)).toEqual([[{ topic: 't', partition: 0, offset: 1 }], [{ topic: 't', partition: 0, offset: 1 }]]);
    expect(acknowledged).toEqual([{ topic: 't', partition: 0, offset: 1 }]);
    expect(p.committed).toBe(1);
    // Acknowledged: nothing more to send.
    expect(await commitDueAsync(partitions, transport, noop, noop)).toBe(false);
    expect(sent).toHaveLength(2);
  });

  it('one unacknowledged commit at a time per offset; a synchronous commit does not rely on it', async () => {
    const partitions = new Map([[partitionKey('t', 1), new PartitionProgress()]]);
    const p = partitions.get('t|1') as PartitionProgress;
    p.add(5, 0);
    p.complete(5);
    const { transport, sent } = recordingTransport();
    const pending = commitDueAsync(partitions, transport, noop, noop);
    expect(p.due()).toBeUndefined(); // under way
    expect(commitDueSync(partitions, transport, noop, noop)).toBe(true);
    expect(sent.map((s) => s.mode)).toEqual(['async', 'sync']);
    await pending;
    expect(p.committed).toBe(6);
  });
});

describe('unanswered commits', () => {
  it('finding: a commit the broker never answers counts as failed after its bound and is sent again; a late answer changes nothing', async () => {
    const partitions = new Map([[partitionKey('t', 2), new PartitionProgress()]]);
    const p = partitions.get('t|2') as PartitionProgress;
    p.add(7, 0);
    p.complete(7);
    const sent: TopicPartitionOffset[][] = [];
    const unanswered: ((error: unknown) => void)[] = [];
    let stoppedWaiting = 0;
    const silent: CommitTransport = {
      commitAsync(offsets, done) {
        sent.push(offsets);
        unanswered.push(done);
        return () => stoppedWaiting++;
      },
      commitSync() {},
    };
    const failures: unknown[] = [];
    const acknowledged: TopicPartitionOffset[] = [];
    expect(
      await commitDueAsync(
        partitions,
        silent,
        (o) => acknowledged.push(o),
        (e) => failures.push(e),
        50,
      ),
    ).toBe(false);
    expect(failures[0]).toBeInstanceOf(CommitUnansweredError);
    expect(stoppedWaiting).toBe(1); // the transport forgets the commit given up on
    expect(p.committed).toBeUndefined();
    expect(p.due()).toBe(8); // free to be sent again
    unanswered[0]?.(undefined); // the first answer, too late: already counted as failed
    expect(acknowledged).toEqual([]);
    const again = commitDueAsync(partitions, silent, (o) => acknowledged.push(o), noop, 5_000);
    unanswered[1]?.(undefined);
    expect(await again).toBe(true);
    expect(sent).toEqual([[{ topic: 't', partition: 2, offset: 8 }], [{ topic: 't', partition: 2, offset: 8 }]]);
    expect(acknowledged).toEqual([{ topic: 't', partition: 2, offset: 8 }]);
    expect(p.committed).toBe(8);
  });
});

describe('rebalance', () => {
  it('a revoked partition commits its finished prefix synchronously, aborts its work and is forgotten; a failed commit leaves it uncommitted', () => {
    const partitions = new Map<string, PartitionProgress>();
    assignPartitions(partitions, [
      { topic: 't', partition: 0 },
      { topic: 't', partition: 1 },
    ]);
    const p0 = partitions.get('t|0') as PartitionProgress;
    p0.add(0, 0);
    p0.add(1, 0);
    p0.complete(0);
    const { transport, sent } = recordingTransport([], [rebalanceInProgress]);
    const failures: unknown[] = [];
    revokePartitions(partitions, [{ topic: 't', partition: 0 }], transport, { onAcknowledged: noop, onFailed: (e) => failures.push(e) });
    expect(sent).toEqual([{ mode: 'sync', offsets: [{ topic: 't', partition: 0, offset: 1 }] }]);
    expect(failures).toHaveLength(1);
    expect(p0.committed).toBeUndefined();
    expect(p0.signal.aborted).toBe(true);
    expect([...partitions.keys()]).toEqual(['t|1']);
  });

  it('finding: a lost assignment is revoked without a commit (it could only wait for the missing coordinator), its work still aborted', () => {
    const partitions = new Map<string, PartitionProgress>();
    assignPartitions(partitions, [{ topic: 't', partition: 0 }]);
    const p0 = partitions.get('t|0') as PartitionProgress;
    p0.add(0, 0);
    p0.complete(0);
    const { transport, sent } = recordingTransport();
    revokePartitions(partitions, [{ topic: 't', partition: 0 }], transport, { lost: true, onAcknowledged: noop, onFailed: noop });
    expect(sent).toEqual([]);
    expect(p0.signal.aborted).toBe(true);
    expect(partitions.size).toBe(0);
  });
});
