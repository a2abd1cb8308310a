// `evalbox dlt list|show|redrive`: inspect and republish dead letters.
import { loadConfig, requireSetting } from '../config.js';
import { latestPerEvent, readDeadLetters, redriveDeadLetters, type DeadLetter } from '../dlt.js';
import { createIdempotentProducer, createKafka } from '../kafka.js';
import { CONNECTION_HELP, CONNECTION_OPTIONS, parse, printJson, printTable, UsageError, type Command } from './args.js';

const summary = (d: DeadLetter) => ({
  ref: d.ref,
  failed_at: d.headers.dlt_failed_at,
  error_code: d.headers.dlt_error_code,
  dimension: d.headers.dlt_dimension || null,
  attempts: d.headers.dlt_attempts,
  original: `${d.headers.dlt_original_topic}:${d.headers.dlt_original_partition}:${d.headers.dlt_original_offset}`,
  ce_id: d.headers.ce_id ?? null,
  key: d.key,
  message: (d.headers.dlt_error_message ?? '').slice(0, 80),
});

export const dltCommand: Command = {
  name: 'dlt',
  summary: 'list, show and redrive dead letters',
  help: `Usage:
  evalbox dlt list                      every dead letter: ref (partition:offset), error, dimension, origin
  evalbox dlt show REF                  one dead letter in full (headers and value)
  evalbox dlt redrive --id REF | --all  republish to the original topic and partition; --all takes the newest
                                        dead letter of each event. Safe to repeat: a redrive is applied once.
                                        --again: try the same dead letters once more on purpose (pays again)
Options: --topic-dlt T (env EVALBOX_TOPIC_DLT, default llm-evaluation-events.DLT)
${CONNECTION_HELP}`,
  async run(argv) {
    const { values, positionals } = parse(
      argv,
      { ...CONNECTION_OPTIONS, id: { type: 'string', multiple: true }, all: { type: 'boolean' }, again: { type: 'boolean' }, 'topic-dlt': { type: 'string' } },
      true,
    );
    if (values.help) {
      process.stdout.write(`${this.help}\n`);
      return 0;
    }
    const [action, ref] = positionals;
    if (!['list', 'show', 'redrive'].includes(action ?? '')) throw new UsageError(`expected list, show or redrive, got "${action ?? ''}"`);
    if (action === 'show' && !ref) throw new UsageError('dlt show needs a REF (partition:offset, from dlt list)');
    if (action === 'redrive' && !values.all && !values.id?.length) throw new UsageError('dlt redrive needs --id REF or --all');
    const config = loadConfig(process.env, { ...values, id: undefined });
    const brokers = requireSetting(config.kafkaBrokers, 'KAFKA_BROKERS');
    const records = await readDeadLetters(brokers, config.topics.dlt);
    if (action === 'list') {
      if (values.json) printJson(records.map(summary));
      else printTable(records.map(summary));
      return 0;
    }
    if (action === 'show') {
      const record = records.find((r) => r.ref === ref);
      if (!record) {
        process.stderr.write(`no dead letter ${ref} on ${config.topics.dlt}\n`);
        return 1;
      }
      const value = record.value?.toString('utf8') ?? null;
      printJson({ ...summary(record), headers: record.headers, value: value && /^[[{]/.test(value) ? safeJson(value) : value });
      return 0;
    }
    const chosen = values.all ? latestPerEvent(records) : records.filter((r) => values.id?.includes(r.ref));
    const missing = (values.id ?? []).filter((id) => !records.some((r) => r.ref === id));
    if (missing.length > 0) process.stderr.write(`not found: ${missing.join(', ')}\n`);
    const producer = createIdempotentProducer(createKafka(brokers, 'evalbox-dlt'));
    await producer.connect();
    try {
      const redriven = await redriveDeadLetters(producer, config.topics.dlt, chosen, { again: Boolean(values.again) });
      if (values.json) printJson({ redriven });
      else process.stdout.write(`redriven ${redriven.length} dead letter(s)${redriven.length ? `: ${redriven.join(', ')}` : ''}\n`);
      return missing.length > 0 ? 1 : 0;
    } finally {
      await producer.disconnect();
    }
  },
};

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
