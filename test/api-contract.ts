// Checks a response against the OpenAPI document the API serves: the status is documented for
// the operation, required headers are present, headers and the body match their schemas. The
// API tests route every response through it, so the document cannot drift from the API.
import { buildOpenApiDocument } from '../src/api/openapi.js';
import { createAjv } from '../src/schemas/validator.js';

interface Json {
  [key: string]: Json | undefined;
}
const doc = buildOpenApiDocument('1') as unknown as Json;
const child = (node: Json | undefined, key: string): Json | undefined => node?.[key];
const ajv = createAjv();
ajv.addSchema(doc, 'openapi.json');
const compiled = new Map<string, ReturnType<typeof ajv.compile>>();
const validatorAt = (pointer: string) => {
  let v = compiled.get(pointer);
  if (!v) compiled.set(pointer, (v = ajv.compile({ $ref: `openapi.json#${pointer}` })));
  return v;
};

const refOf = (value: Json | undefined): string | undefined => {
  const ref = value?.$ref as unknown;
  return typeof ref === 'string' ? ref : undefined;
};
const deref = (value: Json | undefined): Json | undefined => {
  const ref = refOf(value);
  if (ref === undefined) return value;
  return ref
    .slice(2)
    .split('/')
    .reduce<Json | undefined>((node, key) => child(node, key.replace(/~1/g, '/').replace(/~0/g, '~')), doc);
};
const pointerOf = (value: Json | undefined, fallback: string) => refOf(value)?.slice(1) ?? fallback;

const templates = Object.keys(doc.paths ?? {}).map((template) => ({
  template,
  pattern: new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}$`),
}));

export class ContractViolation extends Error {}

/** Throws a ContractViolation when the response is not what the document promises. */
export async function assertDocumented(method: string, url: string, response: Response): Promise<void> {
  const path = new URL(url, 'http://api.test').pathname;
  const where = `${method} ${path} -> ${response.status}`;
  const fail = (what: string) => {
    throw new ContractViolation(`${where}: ${what}`);
  };
  if (!response.headers.get('x-request-id')) fail('no X-Request-Id header');
  const match = templates.find((t) => t.pattern.test(path)) ?? templates.find((t) => t.pattern.test(decodeURIComponent(path)));
  let responseObject: Json | undefined;
  let pointer: string;
  const responses = child(doc.components, 'responses');
  if (!match) {
    // An unknown path: a 404 problem is all it may answer.
    if (response.status !== 404) fail('an undocumented path answered other than 404');
    responseObject = child(responses, 'NotFound');
    pointer = '/components/responses/NotFound';
  } else {
    const operationName = method === 'HEAD' ? 'get' : method.toLowerCase();
    const operation = child(child(doc.paths, match.template), operationName);
    if (!operation) {
      if (response.status !== 405) fail('a method the path does not serve answered other than 405');
      responseObject = child(responses, 'MethodNotAllowed');
      pointer = '/components/responses/MethodNotAllowed';
    } else {
      const declared = child(operation.responses, String(response.status));
      if (!declared) fail(`status ${response.status} is not documented (documented: ${Object.keys(operation.responses ?? {}).join(', ')})`);
      const escaped = match.template.replace(/~/g, '~0').replace(/\//g, '~1');
      pointer = pointerOf(declared, `/paths/${escaped}/${operationName}/responses/${response.status}`);
      responseObject = deref(declared);
    }
  }
  for (const [name, declaredHeader] of Object.entries(responseObject?.headers ?? {})) {
    const header = deref(declaredHeader);
    const value = response.headers.get(name);
    if (value === null) {
      if (header?.required) fail(`required header ${name} is missing`);
      continue;
    }
    const validate = ajv.compile(header?.schema ?? {});
    if (!validate(value)) fail(`header ${name}: ${JSON.stringify(value)} ${ajv.errorsText(validate.errors)}`);
  }
  const content = responseObject?.content ?? {};
  const type = (response.headers.get('content-type') ?? '').split(';')[0]?.trim() ?? '';
  if (Object.keys(content).length === 0) return;
  if (!content[type]) fail(`content type ${type || '(none)'} is not documented (documented: ${Object.keys(content).join(', ')})`);
  if (method === 'HEAD' || type === 'text/event-stream') return;
  const body = await response.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    fail('the body is not JSON');
  }
  const validate = validatorAt(`${pointer}/content/${type.replace(/~/g, '~0').replace(/\//g, '~1')}/schema`);
  if (!validate(parsed)) fail(`body does not match its schema: ${ajv.errorsText(validate.errors)}\n${body.slice(0, 2000)}`);
}

/** Makes app.request check every response it returns. */
export function checkResponses<A extends { request: (...args: never[]) => Response | Promise<Response> }>(app: A): A {
  const original = app.request.bind(app) as unknown as (input: string | Request | URL, init?: RequestInit, ...rest: unknown[]) => Response | Promise<Response>;
  (app as { request: unknown }).request = async (input: string | Request | URL, init?: RequestInit, ...rest: unknown[]) => {
    const response = await original(input, init, ...rest);
    const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    const url = input instanceof Request ? input.url : String(input);
    await assertDocumented(method, url, response.clone());
    return response;
  };
  return app;
}

/** fetch() that checks every response of the API's public port. */
export async function checkedFetch(input: string, init?: RequestInit): Promise<Response> {
  const response = await fetch(input, init);
  await assertDocumented((init?.method ?? 'GET').toUpperCase(), input, response.clone());
  return response;
}
