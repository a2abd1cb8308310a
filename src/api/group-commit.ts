// Group commit: requests that arrive within a short window are written by one statement in one
// transaction, so N requests cost one commit (one WAL flush) instead of N. A unit is the rows of
// one request (one POST, or the valid items of one batch); a unit is never split across groups,
// and units keep their arrival order inside a group. Each unit's promise settles only after the
// group's statement has returned, i.e. after its commit.

export interface GroupCommitSettings {
  /** Off: every unit is written on its own, at once. */
  enabled: boolean;
  /** Longest a unit waits for others; 0 gathers the units that arrive in one event-loop turn. */
  windowMs: number;
  /** A group is written as soon as it holds this many rows. */
  maxRows: number;
}

/** Writes one group's rows; returns one outcome per row (it must not throw for one row's sake). */
export type GroupWriter<Row, Outcome> = (rows: Row[]) => Promise<Outcome[]>;

export function createGroupCommitter<Row, Outcome>(write: GroupWriter<Row, Outcome>, settings: GroupCommitSettings): (unit: Row[]) => Promise<Outcome[]> {
  interface Waiting {
    rows: Row[];
    resolve: (outcomes: Outcome[]) => void;
    reject: (error: unknown) => void;
  }
  let queue: Waiting[] = [];
  let queuedRows = 0;
  let timer: NodeJS.Timeout | NodeJS.Immediate | undefined;

  function flush(): void {
    if (timer) {
      if (settings.windowMs === 0) clearImmediate(timer as NodeJS.Immediate);
      else clearTimeout(timer as NodeJS.Timeout);
      timer = undefined;
    }
    const group = queue;
    queue = [];
    queuedRows = 0;
    if (group.length > 0) void writeGroup(group);
  }

  async function writeGroup(group: Waiting[]): Promise<void> {
    try {
      const outcomes = await write(group.flatMap((w) => w.rows));
      let offset = 0;
      for (const waiting of group) {
        waiting.resolve(outcomes.slice(offset, offset + waiting.rows.length));
        offset += waiting.rows.length;
      }
    } catch (error) {
      for (const waiting of group) waiting.reject(error);
    }
  }

  return (rows) =>
    new Promise<Outcome[]>((resolve, reject) => {
      if (!settings.enabled) {
        void writeGroup([{ rows, resolve, reject }]);
        return;
      }
      queue.push({ rows, resolve, reject });
      queuedRows += rows.length;
      if (queuedRows >= settings.maxRows) flush();
      else if (!timer) timer = settings.windowMs === 0 ? setImmediate(flush) : setTimeout(flush, settings.windowMs);
    });
}
