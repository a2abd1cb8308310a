// The module boundaries of the layout as an ESLint rule. Every relative import, export-from and
// dynamic import() is resolved to the file it names, and both ends are put in an area:
//   core       src/** (config, db, schemas, events, errors, retry, cli, fake-judge, ...) and db/**
//   api        src/api/**        the ingest REST API
//   console    src/console/**    the web console
//   relay      outbox-relay/**   the outbox relay daemon
//   consumers  consumers/**      the scoring consumers
//   fake-judge src/fake-judge/**  the scripted OpenAI-compatible judge (`evalbox fake-judge`)
// Each area imports core and itself, never another area; core imports only core. The one
// exception is the CLI dispatcher (src/cli/main.ts), which loads each process's entry point
// lazily through import(). Tests, benchmarks and scripts may import anything.
// A plain ESLint rule rather than no-restricted-imports because that rule does not see import().
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');

const AREAS = [
  ['api', 'src/api/'],
  ['console', 'src/console/'],
  ['relay', 'outbox-relay/'],
  ['consumers', 'consumers/'],
  ['fake-judge', 'src/fake-judge/'],
  ['core', 'src/'],
  ['core', 'db/'],
];

/** The area of a file given relative to the repository root, or undefined when unrestricted. */
export function areaOf(relative) {
  const posix = relative.split(path.sep).join('/');
  return AREAS.find(([, prefix]) => posix.startsWith(prefix))?.[0];
}

const DISPATCHER = 'src/cli/main.ts';

const rule = {
  meta: {
    type: 'problem',
    docs: { description: 'src/api, src/console, src/fake-judge, outbox-relay/ and consumers/ import only src/ core; core imports none of them' },
    schema: [],
    messages: {
      crossArea: '{{from}} code ({{file}}) must not import {{to}} code ({{target}}): import from src/ core instead (see CONTRIBUTING.md, "Boundaries")',
    },
  },
  create(context) {
    const file = path.relative(root, context.filename);
    const from = areaOf(file);
    if (!from) return {};
    function check(node, source, dynamic) {
      if (!source || typeof source.value !== 'string' || !source.value.startsWith('.')) return;
      const target = path.relative(root, path.resolve(path.dirname(context.filename), source.value));
      const to = areaOf(target);
      if (!to || to === from || to === 'core') return;
      if (dynamic && file.split(path.sep).join('/') === DISPATCHER) return;
      context.report({ node: source, messageId: 'crossArea', data: { from, to, file, target } });
    }
    return {
      ImportDeclaration: (node) => check(node, node.source, false),
      ExportNamedDeclaration: (node) => check(node, node.source, false),
      ExportAllDeclaration: (node) => check(node, node.source, false),
      ImportExpression: (node) => check(node, node.source.type === 'Literal' ? node.source : undefined, true),
    };
  },
};

export default { rules: { 'module-boundaries': rule } };
