import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

/** bench/replicaab.ts as `npm run bench:replicaab` starts it, with a command line it must refuse. */
function replicaab(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/replicaab.ts', ...args], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, err: r.stderr };
}

describe('npm run bench:replicaab: the command line is checked before any group starts', () => {
  it('refuses a missing or malformed --b-replica, a bad --a-replica, --b-node-args or --rate, an unknown flag and --n with --wan, with status 2', () => {
    const refused = (message: string, ...args: string[]) => {
      const r = replicaab(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.err).toContain(message);
    };
    refused('--b-replica or --b-node-args is required', '--n', '4');
    refused('--b-node-args: "semi=8" is not a Node.js flag', '--b-node-args=--trace-gc semi=8');
    refused(
      '--b-replica "window": a replica setting is a number or true/false',
      '--b-replica',
      '{"window":"8"}',
    );
    refused('--a-replica is not JSON', '--a-replica', '{window:8}', '--b-replica', '{}');
    refused("--wan runs the wan part's 4 nodes", '--wan', '--n', '7', '--b-replica', '{}');
    refused('unknown flag --step-ms', '--step-ms', '25', '--b-replica', '{}');
    refused('--rate takes a positive integer, not "fast"', '--rate', 'fast', '--b-replica', '{}');
    refused('--rate takes a positive integer, not "0"', '--rate', '0', '--b-replica', '{}');
  });
});
