// Chaos traffic: several applications, each sending its evaluations one at a time in sequence
// order (so commit order per application is the sequence order), each carrying its sequence
// number in metadata. A request that gets no answer, a 5xx or a 429 is sent again with the same
// Idempotency-Key until it is answered, so every sequence number is accepted exactly once.
import { request } from 'undici';

export interface Application {
  id: string;
  key: string;
}

export interface DriverStats {
  accepted: Map<string, string>; // `${app}/${seq}` -> evaluationId
  replays: number;
  unanswered: number; // attempts that got no HTTP answer (connection refused or cut)
  serverErrors: number; // 5xx answers (e.g. 503 while Postgres is down)
  throttled: number; // 429 answers
  rejected: { status: number; body: string }[]; // 4xx other than 429: a failure of the run
}

const PROMPTS = [
  ['What is the capital of France?', 'Paris is the capital of France.', 'Paris is the capital and largest city of France.'],
  ['When was the Eiffel Tower completed?', 'It was completed in 1889.', 'The Eiffel Tower was completed in 1889 for the World Fair.'],
  [
    'Summarise the refund policy.',
    'Refunds are available within 30 days with a receipt.',
    'Customers may return items within 30 days of purchase with a receipt.',
  ],
  ['Who wrote Hamlet?', 'Hamlet was written by Charles Dickens.', 'Hamlet is a tragedy written by William Shakespeare.'],
  ['How do I reset my password?', 'Call me at 415-555-0199 or mail jane.doe@example.com.', 'Passwords are reset from the account settings page.'],
];

/** The body of one evaluation: every `repeatEvery`-th one reuses a small pool of contents. */
export function evaluationBody(app: string, seq: number, judgeEvery: number, repeatEvery: number) {
  const pick = PROMPTS[seq % PROMPTS.length] as string[];
  const unique = seq % repeatEvery !== 0;
  const dimensions = ['groundedness', 'answer_relevance', 'toxicity', 'pii_leak'];
  if (seq % judgeEvery === 0) dimensions.push('judge_relevance');
  return {
    prompt: unique ? `${pick[0]} (${app} #${seq})` : pick[0],
    response: pick[1],
    context: [pick[2]],
    modelId: 'chaos-model',
    dimensions,
    metadata: { chaosApp: app, chaosSeq: seq },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function driveApplication(
  baseUrl: () => string,
  app: Application,
  count: number,
  options: { judgeEvery: number; repeatEvery: number; stats: DriverStats; onAccepted: () => void; stopped: () => boolean },
): Promise<void> {
  const { stats } = options;
  for (let seq = 0; seq < count && !options.stopped(); seq++) {
    const body = JSON.stringify(evaluationBody(app.id, seq, options.judgeEvery, options.repeatEvery));
    for (let attempt = 0; !options.stopped(); attempt++) {
      let status = 0;
      let text = '';
      let replayed = false;
      try {
        const response = await request(`${baseUrl()}/v1/evaluations`, {
          method: 'POST',
          headers: { authorization: `Bearer ${app.key}`, 'content-type': 'application/json', 'idempotency-key': `${app.id}-${seq}` },
          body,
          headersTimeout: 30_000,
          bodyTimeout: 30_000,
        });
        status = response.statusCode;
        replayed = response.headers['idempotent-replayed'] === 'true';
        text = await response.body.text();
      } catch {
        stats.unanswered++;
      }
      if (status === 202 || status === 200) {
        stats.accepted.set(`${app.id}/${seq}`, (JSON.parse(text) as { evaluationId: string }).evaluationId);
        if (replayed) stats.replays++;
        options.onAccepted();
        break;
      }
      if (status >= 500) stats.serverErrors++;
      else if (status === 429) stats.throttled++;
      else if (status >= 400) {
        stats.rejected.push({ status, body: text.slice(0, 300) });
        break;
      }
      await sleep(Math.min(2000, 50 * 2 ** Math.min(attempt, 6)));
    }
  }
}
