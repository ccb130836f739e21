/**
 * loadGroup (src/cli/group.ts) and a group.json that lists one node id, API address or peer address for two
 * entries (a hand edit, a copied entry): GROUP_INVALID naming the duplicates and the entries that hold them.
 * Accepted, a client asked one node twice (and counted its answer twice in `tx`'s verdict, which had to
 * guard against it) and `group start` started two nodes on one port.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GroupFile, initGroup, loadGroup } from '../../src/cli/group.ts';
import { STANDIN_MODEL } from '../../src/node/standin-backend.ts';
import { DropbearError } from '../../src/protocol/index.ts';

let root: string;
let written: GroupFile;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'dropbear-group-dup-'));
  written = await initGroup({ dir: root, nodes: 4, models: Array(4).fill(STANDIN_MODEL) });
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

/** loadGroup's refusal of `g` written as group.json: its message (GROUP_INVALID), or a throw if it loads. */
function refusal(g: GroupFile): string {
  writeFileSync(join(root, 'group.json'), JSON.stringify(g));
  try {
    loadGroup(root);
  } catch (e) {
    expect(e).toBeInstanceOf(DropbearError);
    expect((e as DropbearError).code).toBe('GROUP_INVALID');
    return (e as DropbearError).message;
  }
  throw new Error('it loaded');
}

const withNode = (i: number, change: Partial<GroupFile['nodes'][number]>): GroupFile => ({
  ...written,
  nodes: written.nodes.map((n, j) => (j === i ? { ...n, ...change } : n)),
});

describe('group.json with duplicates', () => {
  it('one node id twice: refused naming the id and both entries', () => {
    expect(refusal(withNode(2, { id: 1 }))).toMatch(/node id 1 is given to nodes\[1\] and nodes\[2\]/);
  });

  it('one API address twice (also written differently: the scheme in capitals, a trailing slash)', () => {
    const api = written.nodes[0].api;
    expect(refusal(withNode(3, { api }))).toMatch(
      new RegExp(
        `API address ${api.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is given to nodes\\[0\\] and nodes\\[3\\]`,
      ),
    );
    expect(refusal(withNode(3, { api: `${api.replace('http://', 'HTTP://')}/` }))).toMatch(
      /API address .* is given to nodes\[0\] and nodes\[3\]/,
    );
  });

  it('one peer (p2p) address twice', () => {
    expect(refusal(withNode(1, { p2p: written.nodes[2].p2p }))).toMatch(
      /peer address \S+ is given to nodes\[1\] and nodes\[2\]/,
    );
  });

  it('several at once: each named', () => {
    const g = withNode(3, { id: 0, api: written.nodes[1].api });
    const m = refusal(g);
    expect(m).toMatch(/node id 0 is given to nodes\[0\] and nodes\[3\]/);
    expect(m).toMatch(/API address \S+ is given to nodes\[1\] and nodes\[3\]/);
  });

  it('the file as group init wrote it loads', () => {
    writeFileSync(join(root, 'group.json'), JSON.stringify(written));
    expect(loadGroup(root).file.nodes).toHaveLength(4);
  });
});
