import { loadConfig } from '../config.js';
import { stackDown, stackStatus, stackUp } from '../stack/index.js';
import { parse, printJson, UsageError, type Command } from './args.js';

const log = (line: string) => process.stderr.write(`evalbox stack: ${line}\n`);

export const stackCommand: Command = {
  name: 'stack',
  summary: 'start, stop or show the local Postgres and Kafka',
  help: `Usage: evalbox stack up|down|status [--brokers N] [--json]

  up       Install what is missing (Debian postgresql, a JDK, the Kafka jars through mvn) and
           start a private Postgres cluster and a single-node KRaft Kafka broker on free
           loopback ports. Idempotent: a second call reuses what runs. Prints DATABASE_URL=…
           and KAFKA_BROKERS=… lines for eval:  eval "$(npx evalbox stack up)"
           DATABASE_URL / KAFKA_BROKERS that point at reachable servers are used as they are.
           --brokers N starts an N-node KRaft cluster instead of the single broker (3 for a
           real cluster: topics get replication factor 3 and min.insync.replicas=2).
  down     Stop what \`up\` started.
  status   Say what runs where, and the log files.

Environment:
  EVALBOX_CACHE_DIR   where jars, data and logs live (default ~/.cache/evalbox)
  DATABASE_URL, KAFKA_BROKERS`,
  async run(argv) {
    const { values, positionals } = parse(argv, { json: { type: 'boolean' }, brokers: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, true);
    if (values.help) {
      process.stdout.write(`${this.help}\n`);
      return 0;
    }
    const config = loadConfig();
    switch (positionals[0]) {
      case 'up': {
        const brokerCount = values.brokers === undefined ? 1 : Number(values.brokers);
        if (!Number.isInteger(brokerCount) || brokerCount < 1 || brokerCount > 9) throw new UsageError(`--brokers takes a whole number from 1 to 9`);
        const endpoints = await stackUp({
          cacheDir: config.cacheDir,
          databaseUrl: config.databaseUrl || undefined,
          kafkaBrokers: config.kafkaBrokers || undefined,
          brokerCount,
          log,
        });
        if (values.json) printJson(endpoints);
        else process.stdout.write(`DATABASE_URL=${endpoints.databaseUrl}\nKAFKA_BROKERS=${endpoints.kafkaBrokers}\nexport DATABASE_URL KAFKA_BROKERS\n`);
        return 0;
      }
      case 'down':
        await stackDown({ cacheDir: config.cacheDir, log });
        return 0;
      case 'status': {
        const status = await stackStatus(config.cacheDir);
        if (values.json) printJson(status);
        else {
          const pg = status.postgres;
          const k = status.kafka;
          process.stdout.write(
            `postgres  ${pg.running ? 'running' : 'stopped'}  ${pg.url ?? '-'}  data: ${pg.dataDir ?? '-'}  log: ${pg.logFile ?? '-'}\n` +
              `kafka     ${k.running ? 'running' : 'stopped'}  ${k.brokers ?? '-'}  pid: ${k.pid ?? '-'}  log: ${k.logFile ?? '-'}\n`,
          );
          for (const node of status.cluster?.nodes ?? []) {
            process.stdout.write(`kafka[${node.nodeId}]  ${node.running ? 'running' : 'stopped'}  pid: ${node.pid}  log: ${node.logFile}\n`);
          }
        }
        return status.postgres.running && status.kafka.running ? 0 : 1;
      }
      default:
        throw new UsageError(`expected up, down or status, got "${positionals[0] ?? ''}"`);
    }
  },
};
