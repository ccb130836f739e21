/**
 * `dropbear model-update` (src/cli/model-update.ts): the node id it is given, and when it reports an update
 * ordered (the node runs the submitted model at the submitted version or later), not on any version change.
 */
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import {
  type GroupView,
  parseNodeId,
  parseWaitMs,
  registerModelUpdate,
  updateStatus,
} from '../../src/cli/model-update.ts';
import { codeOf } from '../support/errors.ts';

const OURS = 'ab'.repeat(32);
const OTHER = 'cd'.repeat(32);
const view = (version: number, digest: string): GroupView => ({
  models: [
    { node: 0, digest: '00'.repeat(32), version: 0 },
    { node: 1, digest, version },
  ],
});

describe('model-update --node', () => {
  it('takes a decimal node id and refuses anything else with the usage error', () => {
    expect(parseNodeId('0')).toBe(0);
    expect(parseNodeId('12')).toBe(12);
    for (const bad of [
      '',
      ' ',
      ' 1',
      '1 ',
      '-1',
      '+1',
      '1.0',
      '1e0',
      '0x1',
      '01',
      'one',
      '99999999999999999',
    ])
      expect(
        codeOf(() => parseNodeId(bad)),
        JSON.stringify(bad),
      ).toBe('CLI_USAGE');
  });

  it('an empty --node is a usage error before anything else is read (it was node 0)', async () => {
    const program = new Command().exitOverride();
    registerModelUpdate(program);
    const run = program.parseAsync(
      ['model-update', '--group', '/nonexistent/group', '--node', '', '--model', 'm'],
      { from: 'user' },
    );
    await expect(run).rejects.toMatchObject({
      code: 'CLI_USAGE',
      message: expect.stringMatching(/--node must be a node id/),
    });
  });
});

describe('model-update --wait', () => {
  it('takes a positive decimal number of milliseconds and refuses anything else with the usage error', () => {
    expect(parseWaitMs('1')).toBe(1);
    expect(parseWaitMs('30000')).toBe(30000);
    for (const bad of ['', 'abc', '-5', '0', '1.5', '1e3', '0x10', ' 5', '99999999999999999'])
      expect(
        codeOf(() => parseWaitMs(bad)),
        JSON.stringify(bad),
      ).toBe('CLI_USAGE');
  });

  it('a bad --wait is a usage error before anything else is read or sent (it reported TIMEOUT after submitting)', async () => {
    for (const bad of ['abc', '-5', '1.5']) {
      const program = new Command().exitOverride();
      registerModelUpdate(program);
      const run = program.parseAsync(
        ['model-update', '--group', '/nonexistent/group', '--node', '1', '--model', 'm', '--wait', bad],
        { from: 'user' },
      );
      await expect(run, bad).rejects.toMatchObject({
        code: 'CLI_USAGE',
        message: expect.stringMatching(/--wait must be/),
      });
    }
  });
});

describe('model-update: when the update counts as ordered', () => {
  it('waits while the version is below the submitted one', () => {
    expect(updateStatus(view(0, '11'.repeat(32)), 1, 1, OURS)).toBe('waiting');
  });

  it('is ordered when the node runs the submitted model (at that version or later)', () => {
    expect(updateStatus(view(1, OURS), 1, 1, OURS)).toBe('ordered');
    expect(updateStatus(view(1, OURS.toUpperCase()), 1, 1, OURS)).toBe('ordered');
    expect(updateStatus(view(3, OURS), 1, 1, OURS)).toBe('ordered');
  });

  it('another model at that version or later is not success: TX_SUPERSEDED', () => {
    expect(codeOf(() => updateStatus(view(1, OTHER), 1, 1, OURS))).toBe('TX_SUPERSEDED');
    expect(() => updateStatus(view(1, OTHER), 1, 1, OURS)).toThrow(/of the same version was ordered first/);
    expect(() => updateStatus(view(2, OTHER), 1, 1, OURS)).toThrow(/was ordered after it/);
    expect(codeOf(() => updateStatus(view(1, OURS), 5, 1, OURS))).toBe('BAD_RESPONSE');
  });
});
