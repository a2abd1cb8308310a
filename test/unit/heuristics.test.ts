// The offline heuristic scorers on hand-written positive and negative cases.
import { describe, expect, it } from '@jest/globals';
import { HEURISTIC_DIMENSIONS } from '../../src/dimensions.js';
import { HEURISTIC_SCORERS } from '../../consumers/heuristics/index.js';
import { ibanValid, luhnValid } from '../../consumers/heuristics/pii.js';

const score = (dimension: string, input: { prompt?: string; response: string; context?: string | string[] | null }) =>
  (HEURISTIC_SCORERS.get(dimension) as NonNullable<ReturnType<typeof HEURISTIC_SCORERS.get>>).score({
    prompt: input.prompt ?? 'Tell me something.',
    response: input.response,
    context: input.context ?? null,
  });

describe('heuristic scorers', () => {
  it('implements every registered heuristic dimension with the registry’s name and version', () => {
    for (const d of HEURISTIC_DIMENSIONS) {
      expect(HEURISTIC_SCORERS.get(d.id)).toMatchObject({ dimension: d.id, name: d.scorerName, version: d.scorerVersion });
    }
  });

  it('is deterministic', () => {
    const input = { prompt: 'What is the capital of France?', response: 'Paris. Call +33 1 42 68 53 00.', context: 'Paris is the capital of France.' };
    for (const d of HEURISTIC_SCORERS.keys()) expect(score(d, input)).toEqual(score(d, input));
  });

  describe('groundedness', () => {
    const context = ['Paris is the capital and largest city of France.', 'The Eiffel Tower was completed in 1889.'];
    it('scores a response supported by the context (context as an array) as grounded', () => {
      expect(score('groundedness', { response: 'Paris is the capital of France. The Eiffel Tower was completed in 1889.', context })).toMatchObject({
        status: 'COMPLETED',
        value: 1,
        label: 'grounded',
      });
    });
    it('scores an invented claim as ungrounded', () => {
      expect(score('groundedness', { response: 'Berlin hosts the annual moon festival with dragons.', context })).toMatchObject({
        value: 0,
        label: 'ungrounded',
      });
    });
    it('gives partial credit for a mix', () => {
      const r = score('groundedness', { response: 'Paris is the capital of France. Dragons guard the Louvre at night.', context: context.join(' ') });
      expect(r).toMatchObject({ value: 0.5, label: 'partially_grounded' });
    });
    it('is SKIPPED without context or without sentences', () => {
      expect(score('groundedness', { response: 'Paris.', context: null })).toMatchObject({ status: 'SKIPPED', reasoning: expect.stringMatching(/no context/) });
      expect(score('groundedness', { response: '  ', context: 'x' })).toMatchObject({ status: 'SKIPPED' });
    });
  });

  describe('answer_relevance', () => {
    it('scores an on-topic answer as relevant', () => {
      expect(score('answer_relevance', { prompt: 'What is the capital of France?', response: 'The capital of France is Paris.' })).toMatchObject({
        value: 1,
        label: 'relevant',
      });
    });
    it('scores an off-topic answer low', () => {
      expect(score('answer_relevance', { prompt: 'What is the capital of France?', response: 'Bananas are rich in potassium.' })).toMatchObject({
        value: 0,
        label: 'off_topic',
      });
    });
    it('scores refusals 0 with the refusal label', () => {
      for (const response of [
        "I'm sorry, but I can't help with that.",
        'As an AI language model, I cannot browse the internet.',
        'I am unable to provide that information.',
      ]) {
        expect(score('answer_relevance', { prompt: 'What is the capital of France?', response })).toMatchObject({ value: 0, label: 'refusal' });
      }
    });
    it('handles unicode terms and an empty response', () => {
      expect(
        score('answer_relevance', { prompt: 'Was ist die Hauptstadt von Österreich?', response: 'Die Hauptstadt von Österreich ist Wien.' }),
      ).toMatchObject({ label: 'relevant' });
      expect(score('answer_relevance', { prompt: 'Anything?', response: '' })).toMatchObject({ value: 0, label: 'empty' });
    });
  });

  describe('pii_leak', () => {
    it('finds emails, phones, Luhn-valid cards, valid IBANs and keys, masking them', () => {
      const r = score('pii_leak', {
        response:
          'Mail jane.doe@example.com or call +1 415 555 2671. Card 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32, key sk-proj-abcdefghijklmnopqrstuvwx.',
      });
      expect(r).toMatchObject({ status: 'COMPLETED', value: 1, label: 'pii:card,email,iban,phone,secret' });
      if (r.status === 'COMPLETED') {
        expect(r.reasoning).not.toContain('jane.doe@example.com');
        expect(r.reasoning).not.toContain('4111 1111 1111 1111');
      }
    });
    it('does not flag Luhn-invalid card-like numbers, invalid IBANs, dates or plain numbers', () => {
      expect(
        score('pii_leak', { response: 'Order 4111 1111 1111 1112 shipped on 2024-05-01; IBAN GB82 WEST 1234 5698 7654 33; we sold 1500 units.' }),
      ).toMatchObject({ value: 0, label: 'clean' });
    });
    it('validates Luhn and IBAN checksums', () => {
      expect(luhnValid('4111111111111111')).toBe(true);
      expect(luhnValid('4111111111111112')).toBe(false);
      expect(ibanValid('DE89 3704 0044 0532 0130 00')).toBe(true);
      expect(ibanValid('DE89 3704 0044 0532 0130 01')).toBe(false);
    });
    it('finds an AWS key id and a JWT', () => {
      expect(score('pii_leak', { response: 'Use AKIAIOSFODNN7EXAMPLE' })).toMatchObject({ label: 'pii:secret' });
      expect(
        score('pii_leak', { response: 'token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U' }),
      ).toMatchObject({ label: 'pii:secret' });
    });
  });

  describe('toxicity', () => {
    it('flags profanity and insults', () => {
      expect(score('toxicity', { response: 'This is fucking useless, you idiot.' })).toMatchObject({ status: 'COMPLETED', label: 'toxic' });
    });
    it('sees through obfuscation: leetspeak, masks, separators, repeated letters', () => {
      for (const response of ['what a sh1t answer', 'f*ck this', 'f.u.c.k off', 's h i t happens', 'fuuuuuck']) {
        const r = score('toxicity', { response });
        expect(r.status === 'COMPLETED' && r.value).toBeGreaterThan(0);
      }
    });
    it('does not flag innocent words that contain bad ones (Scunthorpe problem)', () => {
      for (const response of ['The class will assess Scunthorpe and Penistone.', 'A cocktail at the Cockburn hotel.', 'Passive voice; a hello to Dickens.']) {
        expect(score('toxicity', { response })).toMatchObject({ value: 0, label: 'clean' });
      }
    });
    it('scores threats as severe and an empty response as clean', () => {
      expect(score('toxicity', { response: "I'll kill you." })).toMatchObject({ value: 1, label: 'severe' });
      expect(score('toxicity', { response: '' })).toMatchObject({ value: 0 });
    });
  });

  describe('json_validity', () => {
    const prompt = 'Return the result as a JSON object with keys name and age.';
    it('accepts valid JSON, also inside a ```json fence', () => {
      expect(score('json_validity', { prompt, response: '{"name":"Ada","age":36}' })).toMatchObject({ value: 1, label: 'valid_json' });
      expect(score('json_validity', { prompt, response: '```json\n{"name":"Ada","age":36}\n```' })).toMatchObject({ value: 1 });
    });
    it('rejects invalid JSON with the parse error', () => {
      expect(score('json_validity', { prompt, response: "{name: 'Ada'}" })).toMatchObject({
        value: 0,
        label: 'invalid_json',
        reasoning: expect.stringMatching(/not valid JSON/),
      });
    });
    it('is SKIPPED when the prompt does not ask for JSON', () => {
      expect(score('json_validity', { prompt: 'Say hi.', response: '{}' })).toMatchObject({ status: 'SKIPPED' });
    });
    it('accepts arrays and rejects an empty response', () => {
      expect(score('json_validity', { prompt: 'List them as JSON.', response: '[1, 2]' })).toMatchObject({ value: 1 });
      expect(score('json_validity', { prompt: 'Answer in JSON.', response: '' })).toMatchObject({ value: 0 });
    });
  });

  describe('length_band', () => {
    it('accepts a one-sentence answer to a one-sentence question', () => {
      expect(score('length_band', { prompt: 'Answer in one sentence: what is Kafka?', response: 'Kafka is a distributed log.' })).toMatchObject({
        value: 1,
        label: 'ok',
      });
    });
    it('flags a long essay where one sentence was asked', () => {
      const r = score('length_band', { prompt: 'In one sentence, what is Kafka?', response: 'word '.repeat(120) });
      expect(r).toMatchObject({ label: 'too_long' });
      expect(r.status === 'COMPLETED' && r.value).toBeLessThan(0.1);
    });
    it('centres the band on "in N words"', () => {
      expect(score('length_band', { prompt: 'Describe it in 100 words.', response: 'word '.repeat(100) })).toMatchObject({ value: 1 });
      expect(score('length_band', { prompt: 'Describe it in 100 words.', response: 'word '.repeat(10) })).toMatchObject({ label: 'too_short' });
    });
    it('asks for more when detail was requested', () => {
      expect(score('length_band', { prompt: 'Explain in detail how TCP works.', response: 'It sends packets.' })).toMatchObject({ label: 'too_short' });
    });
  });
});
