import { loadConfig, requireSetting } from '../config.js';
import { createDb } from '../db/index.js';
import { createApiKey, listApiKeys, revokeApiKey } from '../keys.js';
import { CONNECTION_HELP, CONNECTION_OPTIONS, parse, printJson, printTable, UsageError, type Command } from './args.js';

export const keysCommand: Command = {
  name: 'keys',
  summary: 'create, list or revoke API keys',
  help: `Usage:
  evalbox keys create --app APP [--json]   print a new key for APP (shown once, alone on stdout)
  evalbox keys list [--app APP] [--json]
  evalbox keys revoke ID|PREFIX
${CONNECTION_HELP}`,
  async run(argv) {
    const { values, positionals } = parse(argv, { ...CONNECTION_OPTIONS, app: { type: 'string' } }, true);
    if (values.help) {
      process.stdout.write(`${this.help}\n`);
      return 0;
    }
    const config = loadConfig(process.env, values);
    const [action, target] = positionals;
    if (action === 'create' && !values.app) throw new UsageError('keys create needs --app APP');
    if (action === 'revoke' && !target) throw new UsageError('keys revoke needs an id or a prefix');
    if (!['create', 'list', 'revoke'].includes(action ?? '')) throw new UsageError(`expected create, list or revoke, got "${action ?? ''}"`);
    const handle = createDb(requireSetting(config.databaseUrl, 'DATABASE_URL'), { max: 1 });
    try {
      if (action === 'create') {
        const created = await createApiKey(handle.db, values.app as string);
        if (values.json) printJson(created);
        else process.stdout.write(`${created.key}\n`);
        return 0;
      }
      if (action === 'list') {
        const rows = await listApiKeys(handle.db, values.app);
        if (values.json) printJson(rows);
        else printTable(rows);
        return 0;
      }
      const revoked = await revokeApiKey(handle.db, target as string);
      if (values.json) printJson({ revoked });
      else process.stdout.write(`revoked ${revoked} key(s)\n`);
      return revoked > 0 ? 0 : 1;
    } finally {
      await handle.close();
    }
  },
};
