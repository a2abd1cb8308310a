import { loadConfig, requireSetting } from '../config.js';
import { createDb, migrateToLatest } from '../db/index.js';
import { coerceError } from '../errors.js';
import { CONNECTION_HELP, CONNECTION_OPTIONS, parse, printJson, type Command } from './args.js';

export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'apply pending database migrations (a deploy step)',
  help: `Usage: evalbox migrate [--database-url URL] [--json]

Applies pending migrations in order, in one transaction under an advisory lock, and prints
what it applied. Applying twice is a no-op.
${CONNECTION_HELP}`,
  async run(argv) {
    const { values } = parse(argv, CONNECTION_OPTIONS);
    if (values.help) {
      process.stdout.write(`${this.help}\n`);
      return 0;
    }
    const config = loadConfig(process.env, values);
    const handle = createDb(requireSetting(config.databaseUrl, 'DATABASE_URL'), { max: 1 });
    try {
      const { error, results } = await migrateToLatest(handle.db);
      if (values.json) printJson({ results, error: error ? coerceError(error).message : undefined });
      else {
        for (const r of results) process.stdout.write(`${r.status === 'Success' ? 'applied' : r.status.toLowerCase()}  ${r.migrationName}\n`);
        if (results.length === 0 && !error) process.stdout.write('up to date: no migration to apply\n');
      }
      if (error) {
        process.stderr.write(`migration failed: ${coerceError(error).message}\n`);
        return 1;
      }
      return 0;
    } finally {
      await handle.close();
    }
  },
};
