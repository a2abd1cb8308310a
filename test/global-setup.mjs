// Migrates a template database once per test run (through the CLI, as an operator would);
// each test file clones it (see helpers.ts). Plain JS: jest loads global setup outside its
// module system.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import pg from 'pg';

// One template per checkout (the same rule as db-names.ts), so checkouts can share one Postgres.
export const TEMPLATE_DB = `evalbox_test_template_${createHash('sha1').update(process.cwd()).digest('hex').slice(0, 8)}`;

export default async function globalSetup() {
  const base = process.env.DATABASE_URL;
  if (!base || !process.env.KAFKA_BROKERS) {
    throw new Error('DATABASE_URL and KAFKA_BROKERS must be set: run the tests through ./scripts/test');
  }
  const url = new URL(base);
  url.pathname = '/postgres';
  const admin = new pg.Client({ connectionString: url.toString() });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE_DB} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${TEMPLATE_DB}`);
  } finally {
    await admin.end();
  }
  url.pathname = `/${TEMPLATE_DB}`;
  const migrate = spawnSync('node', ['bin/evalbox.js', 'migrate', '--database-url', url.toString()], { encoding: 'utf8' });
  if (migrate.status !== 0) throw new Error(`evalbox migrate failed:\n${migrate.stdout}${migrate.stderr}`);
}
