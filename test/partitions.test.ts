// Retention without DELETE: partitions are created ahead and dropped only when they are past the
// retention window and entirely behind every shard's cursor.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from 'kysely';
import { insertOutboxEvents } from '../src/events.js';
import { maintainPartitions } from '../outbox-relay/partitions.js';
import { createTestDatabase, type TestDatabase } from './helpers.js';

describe('outbox partitions', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase({ max: 4 });
  });
  afterAll(async () => database.drop());

  const partitions = async () =>
    (
      await sql<{
        name: string;
      }>`SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'outbox'::regclass ORDER BY 1`.execute(
        database.db,
      )
    ).rows.map((r) => r.name);

  const insertAt = (day: string, key: string) =>
    sql`INSERT INTO outbox (id, shard, topic, key, type, source, payload, created_at)
        VALUES (gen_random_uuid(), outbox_shard_of(${key}), 't', ${key}, 'test', '/test', '{}', ${`${day}T12:00:00Z`}::timestamptz)`.execute(database.db);

  it('creates partitions ahead, idempotently', async () => {
    const now = new Date('2031-03-10T08:00:00Z');
    const first = await maintainPartitions(database.db, { retentionHours: 48, partitionsAhead: 2, now });
    expect(first.created).toEqual(['outbox_p20310310', 'outbox_p20310311', 'outbox_p20310312']);
    const second = await maintainPartitions(database.db, { retentionHours: 48, partitionsAhead: 2, now });
    expect(second.created).toEqual([]);
    expect(await partitions()).toEqual(expect.arrayContaining(['outbox_p20310310', 'outbox_p20310311', 'outbox_p20310312']));
  });

  it('drops an old partition only once every row in it is behind its shard’s cursor, and never a recent one', async () => {
    await sql`SELECT outbox_create_partitions('2031-01-01'::date, 3)`.execute(database.db);
    await insertAt('2031-01-01', 'a'); // will be published
    await insertAt('2031-01-02', 'a'); // will stay pending
    await insertAt('2031-01-03', 'a');
    // The cursor sits after the first row only.
    const [first] = (
      await sql<{ xid: string; seq: string }>`SELECT xid::text, seq::text FROM outbox WHERE created_at < '2031-01-02' ORDER BY xid, seq`.execute(database.db)
    ).rows;
    await sql`INSERT INTO relay_leases (shard, cursor_xid, cursor_seq) VALUES (0, ${first?.xid}::xid8, ${first?.seq}::bigint)`.execute(database.db);

    const now = new Date('2031-03-10T08:00:00Z');
    const outcome = await maintainPartitions(database.db, { retentionHours: 48, partitionsAhead: 0, now });
    expect(outcome.dropped).toEqual(['outbox_p20310101']);
    expect(outcome.kept).toEqual(expect.arrayContaining(['outbox_p20310102', 'outbox_p20310103']));
    expect(await partitions()).not.toContain('outbox_p20310101');
    expect(await partitions()).toContain('outbox_p20310310'); // inside the window
    expect(await partitions()).toContain('outbox_default');

    // Once the cursor passes the rest, they go too; no row was ever deleted from a live partition.
    await sql`UPDATE relay_leases SET cursor_xid = (SELECT max(xid) FROM outbox), cursor_seq = (SELECT max(seq) FROM outbox)`.execute(database.db);
    const later = await maintainPartitions(database.db, { retentionHours: 48, partitionsAhead: 0, now });
    expect(later.dropped).toEqual(expect.arrayContaining(['outbox_p20310102', 'outbox_p20310103']));
  });

  it('keeps a partition whose rows belong to a shard that has no cursor yet', async () => {
    await sql`SELECT outbox_create_partitions('2031-02-01'::date, 1)`.execute(database.db);
    await sql`UPDATE outbox_settings SET shards = 8`.execute(database.db);
    // A key on a shard other than 0, which has no lease row at all.
    let key = 'b';
    for (let i = 0; (await sql<{ s: number }>`SELECT outbox_shard_of(${key}) AS s`.execute(database.db)).rows[0]?.s === 0; i++) key = `b${i}`;
    await insertAt('2031-02-01', key);
    const outcome = await maintainPartitions(database.db, { retentionHours: 48, partitionsAhead: 0, now: new Date('2031-03-10T08:00:00Z') });
    expect(outcome.kept).toContain('outbox_p20310201');
    expect(outcome.dropped).not.toContain('outbox_p20310201');
  });

  it('finding 5: creating a partition behind a long reader of outbox never stalls an ingest insert', async () => {
    const reader = await database.pool.connect();
    let readerOpen = true;
    try {
      await reader.query('BEGIN');
      await reader.query('SELECT count(*) FROM outbox'); // holds a lock on outbox until the transaction ends
      // A day without partitions: maintenance must create them, which needs an exclusive lock on outbox.
      const maintenance = maintainPartitions(database.db, { retentionHours: 48, partitionsAhead: 1, now: new Date('2032-05-01T08:00:00Z') });
      await new Promise((r) => setTimeout(r, 300));
      const inserted = database.db
        .transaction()
        .execute((trx) => insertOutboxEvents(trx, [{ topic: 't', key: 'k', type: 'test', source: '/test', data: { n: 1 } }]))
        .then(() => (readerOpen ? 'while the reader was still open' : 'only after the reader ended'));
      const outcome = await Promise.race([inserted, new Promise((r) => setTimeout(() => r('stalled for 5 s'), 5000))]);
      expect(outcome).toBe('while the reader was still open');
      await reader.query('COMMIT');
      readerOpen = false;
      // Maintenance gave up on the locked table for a moment instead of queueing ingest behind
      // it; once the reader is gone, this round or the next creates the partitions.
      const first = await maintenance;
      const again = await maintainPartitions(database.db, { retentionHours: 48, partitionsAhead: 1, now: new Date('2032-05-01T08:00:00Z') });
      expect([...first.created, ...again.created].sort()).toEqual(['outbox_p20320501', 'outbox_p20320502']);
    } finally {
      if (readerOpen) await reader.query('ROLLBACK');
      reader.release();
    }
  });
});
