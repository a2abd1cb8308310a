// Names and URLs of the test databases.
export const TEMPLATE_DB = 'evalbox_test_template';

export function databaseUrlFor(base: string, database: string): string {
  const url = new URL(base);
  url.pathname = `/${database}`;
  return url.toString();
}

export const adminUrl = (base: string) => databaseUrlFor(base, 'postgres');
