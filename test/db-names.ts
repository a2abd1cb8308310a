// Names and URLs of the test databases.
import { createHash } from 'node:crypto';

// One template per checkout, so test runs from two checkouts can share one Postgres.
export const TEMPLATE_DB = `evalbox_test_template_${createHash('sha1').update(process.cwd()).digest('hex').slice(0, 8)}`;

export function databaseUrlFor(base: string, database: string): string {
  const url = new URL(base);
  url.pathname = `/${database}`;
  return url.toString();
}

export const adminUrl = (base: string) => databaseUrlFor(base, 'postgres');
