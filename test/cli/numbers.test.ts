/**
 * Numbers on the command line (src/cli/numbers.ts): decimal text only. `Number()` read "" as 0, "0x10" as
 * 16 and "abc" as NaN, and each of those was taken. The commands' own cases run the real CLI in
 * cli.test.ts; serve-model's are here, in process, since a value taken there starts a server that stays up.
 */
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { parseDecimal, parseWhole } from '../../src/cli/numbers.ts';
import { registerServeModel } from '../../src/cli/serve-model.ts';
import { codeOf } from '../support/errors.ts';

/** `serve-model no-such-model OPTION VALUE` fails with CLI_USAGE, its message holding `message`. */
async function expectServeModelUsageError(option: string, value: string, message: string): Promise<void> {
  const program = new Command().exitOverride();
  registerServeModel(program);
  const run = program.parseAsync(
    ['serve-model', 'no-such-model', option, value, '--home', '/nonexistent/home'],
    { from: 'user' },
  );
  await expect(run).rejects.toMatchObject({ code: 'CLI_USAGE', message: expect.stringContaining(message) });
}

describe('parseWhole and parseDecimal', () => {
  it('take decimal text in range', () => {
    expect(parseWhole('--n', '0')).toBe(0);
    expect(parseWhole('--n', '007')).toBe(7);
    expect(parseWhole('--port', '65535', 0, 65535)).toBe(65535);
    expect(parseDecimal('--p', '0.25', 0, 1)).toBe(0.25);
    expect(parseDecimal('--p', '.5', 0, 1)).toBe(0.5);
    expect(parseDecimal('--p', '1e-3', 0, 1)).toBe(0.001);
    expect(parseDecimal('--ms', '60000', 0, 60_000)).toBe(60_000);
  });

  it('refuse what Number() would have taken, with CLI_USAGE naming the option and the text', () => {
    for (const bad of [
      '',
      ' ',
      ' 1',
      '1 ',
      '-1',
      '+1',
      '1.0',
      '1e1',
      '0x10',
      '0b1',
      'abc',
      'Infinity',
      '99999999999999999',
    ])
      expect(
        codeOf(() => parseWhole('--n', bad)),
        JSON.stringify(bad),
      ).toBe('CLI_USAGE');
    for (const bad of ['', ' ', '-0.1', '+0.1', '0x1', 'abc', 'Infinity', 'NaN', '1.5', '.', 'e1'])
      expect(
        codeOf(() => parseDecimal('--p', bad, 0, 1)),
        JSON.stringify(bad),
      ).toBe('CLI_USAGE');
    expect(() => parseWhole('--port', '70000', 0, 65535)).toThrow(
      '--port must be a whole number from 0 to 65535, got "70000"',
    );
    expect(() => parseDecimal('--loss', '', 0, 0.9)).toThrow('--loss must be a number in [0, 0.9], got ""');
  });
});

describe('serve-model numeric options', () => {
  // Each was taken: --port "" served on a random port, --worker-nice "" ran at 0, --threads 0x2 with 2.
  const cases: [string, string][] = [
    ['--port', ''],
    ['--port', '0x1f40'],
    ['--worker-nice', ''],
    ['--threads', '0x2'],
    ['--max-batch', '1e1'],
    ['--body-limit-mib', ' 8'],
    ['--max-items', '+4'],
    ['--request-timeout-ms', ''],
  ];
  for (const [option, value] of cases)
    it(`${option} ${JSON.stringify(value)} is a usage error before the model is looked for`, () =>
      expectServeModelUsageError(option, value, option));
});

describe('serve-model text options', () => {
  // `--host ""` served on every interface (Node's default for an empty host: `[::]`), not the loopback
  // default; `--name ""` served the model under an empty name (`/v2/models//infer`).
  for (const [option, value] of [
    ['--host', ''],
    ['--host', ' '],
    ['--name', ''],
  ])
    it(`${option} ${JSON.stringify(value)} is a usage error before the model is looked for`, () =>
      expectServeModelUsageError(option, value, `${option} must not be empty`));
});

describe('serve-model --name', () => {
  // `--name a/b` served under a name no route matches: every call was 404.
  for (const value of ['a/b', 'a?b', 'a#b', 'a%20b', 'a b', '..', 'a\\b'])
    it(`${JSON.stringify(value)} is a usage error: not one URL path segment`, () =>
      expectServeModelUsageError('--name', value, '--name must be one URL path segment'));

  it('a name of letters, digits, ".", "-", "_" and "@" passes: the model is looked for', async () => {
    const program = new Command().exitOverride();
    registerServeModel(program);
    const run = program.parseAsync(
      ['serve-model', 'no-such-model', '--name', 'My-model_v1.2@x', '--home', '/nonexistent/home'],
      { from: 'user' },
    );
    await expect(run).rejects.toMatchObject({ code: 'MODEL_NOT_FOUND' });
  });
});
