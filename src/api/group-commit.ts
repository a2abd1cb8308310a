// Group commit: requests that arrive together are written by one statement in one transaction, so
// N requests cost one commit (one WAL flush) instead of N. A unit is the rows of one request (one
// POST, or the valid items of one batch); a unit is never split across groups, and units keep
// their arrival order inside a group. Each unit's promise settles only after the group's
// statement has returned, i.e. after its commit.
//
// At most maxInFlight groups are written at once ("natural batching"): while that many are in
// flight, arriving units wait, and the moment one finishes they are written as the next group. A
// group then gathers what arrived during one commit, so groups grow with commit latency instead
// of a fixed window cutting them short. The window applies only while a slot is free.

export interface GroupCommitSettings {
  /** Off: every unit is written on its own, at once. */
  enabled: boolean;
  /** Longest a unit waits for others while a slot is free; 0 gathers the units of one event-loop turn. */
  windowMs: number;
  /** A group is closed once it holds this many rows (its last unit may take it past). */
  maxRows: number;
  /** Most groups written at once; 0 means no bound. */
  maxInFlight: number;
}

/** Writes one group's rows; returns one outcome per row (it must not throw for one row's sake). */
export type GroupWriter<Row, Outcome> = (rows: Row[]) => Promise<Outcome[]>;

/** What an operator sees of the queue (a metric): how long a unit waited for its group to start. */
export type QueueObserver = (seconds: number) => void;

export function createGroupCommitter<Row, Outcome>(
  write: GroupWriter<Row, Outcome>,
  settings: GroupCommitSettings,
  observeWait?: QueueObserver,
): (unit: Row[]) => Promise<Outcome[]> {
  interface Waiting {
    rows: Row[];
    resolve: (outcomes: Outcome[]) => void;
    reject: (error: unknown) => void;
    queuedAt: number;
  }
  const maxInFlight = settings.maxInFlight > 0 ? settings.maxInFlight : Number.POSITIVE_INFINITY;
  let queue: Waiting[] = [];
  let queuedRows = 0;
  let inFlight = 0;
  // Invariant: units are queued only while the window timer runs or every slot is taken.
  let timer: NodeJS.Timeout | NodeJS.Immediate | undefined;

  function clearWindow(): void {
    if (!timer) return;
    if (settings.windowMs === 0) clearImmediate(timer as NodeJS.Immediate);
    else clearTimeout(timer as NodeJS.Timeout);
    timer = undefined;
  }

  /** Writes queued units, one group per free slot; what does not fit waits for a slot. */
  function flush(): void {
    clearWindow();
    while (queue.length > 0 && inFlight < maxInFlight) {
      let rows = 0;
      let taken = 0;
      while (taken < queue.length && rows < settings.maxRows) rows += (queue[taken++] as Waiting).rows.length;
      const group = queue.slice(0, taken);
      queue = queue.slice(taken);
      queuedRows -= rows;
      void writeGroup(group);
    }
  }

  async function writeGroup(group: Waiting[]): Promise<void> {
    inFlight++;
    if (observeWait && settings.enabled) {
      const started = performance.now();
      // A metric must never break the committer: a throw here would leak the slot.
      try {
        for (const waiting of group) observeWait((started - waiting.queuedAt) / 1000);
      } catch {
        // ignored: the group is written all the same
      }
    }
    try {
      const outcomes = await write(group.flatMap((w) => w.rows));
      let offset = 0;
      for (const waiting of group) {
        waiting.resolve(outcomes.slice(offset, offset + waiting.rows.length));
        offset += waiting.rows.length;
      }
    } catch (error) {
      for (const waiting of group) waiting.reject(error);
    } finally {
      inFlight--;
      // Units that waited for a slot go now; units inside a running window keep waiting for it.
      if (settings.enabled && queue.length > 0 && !timer) flush();
    }
  }

  return (rows) =>
    new Promise<Outcome[]>((resolve, reject) => {
      if (!settings.enabled) {
        void writeGroup([{ rows, resolve, reject, queuedAt: performance.now() }]);
        return;
      }
      queue.push({ rows, resolve, reject, queuedAt: performance.now() });
      queuedRows += rows.length;
      if (inFlight >= maxInFlight) return; // written when a group in flight finishes
      if (queuedRows >= settings.maxRows) flush();
      else if (!timer) timer = settings.windowMs === 0 ? setImmediate(flush) : setTimeout(flush, settings.windowMs);
    });
}
