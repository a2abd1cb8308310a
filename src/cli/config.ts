// `evalbox config`: the effective configuration of every process, each setting with its value
// (secrets masked) and where it came from. A value that does not validate fails here as it
// would at a process's start, naming the variable.
import { describeConfig, describeSetting, maskSecret, scopeOf } from '../config.js';
import { parse, printJson, printTable, UsageError, type Command } from './args.js';

const SCOPES = ['api', 'relay', 'scorer', 'common'] as const;

export const configCommand: Command = {
  name: 'config',
  summary: 'print the effective configuration (secrets masked) and where each value comes from',
  help: `Usage: evalbox config [--process api|relay|scorer|common] [--json]

Prints every setting: its flag, environment variable, effective value, default, and where the
value came from (flag, env, file, default). Secrets (the judge API key, the password in
DATABASE_URL) are masked. Settings come from flags, then EVALBOX_* environment variables (plus
DATABASE_URL and KAFKA_BROKERS), then the JSON file named by EVALBOX_CONFIG_FILE (an object of
the same variable names), then the defaults. An invalid value fails with a message naming it.

Options:
  --process P   only the settings of one process (common: those every process reads)
  --json        machine-readable output
  -h, --help    this help`,
  async run(argv) {
    const { values } = parse(argv, { process: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } });
    if (values.help) {
      process.stdout.write(`${this.help}\n`);
      return 0;
    }
    const scope = values.process;
    if (scope !== undefined && !(SCOPES as readonly string[]).includes(scope))
      throw new UsageError(`--process must be one of ${SCOPES.join(', ')}, got "${scope}"`);
    const rows = describeConfig(process.env)
      .filter((s) => scope === undefined || scopeOf(s.env) === scope)
      .map((s) => ({
        process: scopeOf(s.env),
        variable: s.env,
        value: maskSecret(s.env, s.value),
        source: s.source,
        default: maskSecret(s.env, s.defaultValue),
        flag: `--${s.flag}`,
        what: describeSetting(s.env),
      }));
    if (values.json) printJson(rows);
    else printTable(rows, ['process', 'variable', 'value', 'source', 'what']);
    return 0;
  },
};
