/**
 * A faulty but authenticated peer that sends messages signed in its own name with bad signatures (a flood
 * of PREPAREs with junk signatures): three real hosts (stand-in models, SQLite ledgers) on real transports
 * over 127.0.0.1, and node 1 a bare transport with its real key that sends whatever the test says. The
 * host reports the first bad signature, the transport closes the connection and keeps node 1 out for the
 * quarantine (refusing its HELLOs, or not dialling it), the other three go on certifying, and node 1 gets
 * back in once the quarantine is over. A signature node 1 only relays gets it dropped too.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Logger, NodeHost } from '../../src/node/host.ts';
import { NodeMetrics, peerStatesOf } from '../../src/node/metrics.ts';
import { startStandIn } from '../../src/node/standin-backend.ts';
import { Transport, type TransportOptions } from '../../src/node/transport.ts';
import { encodeMessage, hex, type NodeMessage, signResults } from '../../src/protocol/index.ts';
import { makeGroup } from '../../src/sim/world.ts';
import { standInRequest } from './standin-request.ts';

const HOST = '127.0.0.1';
const dir = mkdtempSync(join(tmpdir(), 'dropbear-quarantine-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const QUARANTINE_MS = 2_000;
const NET: Partial<TransportOptions> = {
  backoff: { minMs: 20, maxMs: 100 },
  handshakeTimeoutMs: 2_000,
  quarantine: { minMs: QUARANTINE_MS, maxMs: 8 * QUARANTINE_MS, forgiveMs: 60_000 },
};
const FAULTY = 1;
const JUNK = new Uint8Array(64).fill(7);

async function waitFor(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('a peer that sends bad signatures of its own is dropped and quarantined', () => {
  it('PREPAREs with junk signatures: one checked, the connection closed, the peer kept out, then back', async () => {
    const group = makeGroup(4, 1, 41);
    const ts: Transport[] = [];
    const hosts: NodeHost[] = [];
    const warned: { obj: { code?: unknown }; msg?: string; level: string }[] = [];
    const metrics2 = new NodeMetrics();
    // Hosts and transports alike: every warning and error an operator greps or alerts on names its code.
    const logger: Logger = {
      info() {},
      error: (obj, msg) => warned.push({ obj, msg, level: 'error' }),
      warn: (obj, msg) => warned.push({ obj, msg, level: 'warn' }),
    };
    try {
      // Highest id first, so that each knows the ports of the nodes it dials (the lower id dials).
      const ports = new Map<number, number>();
      for (const id of [3, 2, 1, 0]) {
        const peers = new Map<number, { host: string; port: number }>();
        for (const [pid, port] of ports) if (pid > id) peers.set(pid, { host: HOST, port });
        ts[id] = new Transport({
          id,
          genesis: group.genesis,
          key: group.keys[id],
          listen: { host: HOST, port: 0 },
          peers,
          ...NET,
          logger: logger as Required<Logger>,
        });
        ports.set(id, await ts[id].start());
      }
      for (const id of [0, 2, 3]) {
        hosts[id] = NodeHost.open({
          id,
          genesis: group.genesis,
          key: group.keys[id],
          ledgerPath: join(dir, `node-${id}.sqlite`),
          backends: [startStandIn(id)],
          wire: ts[id],
          replica: { batchTimeoutMs: 1, voteWaitMs: 1, retransmitMs: 50 },
          logger,
          observe: id === 2 ? metrics2.observer() : undefined,
        });
        hosts[id].start();
      }
      const link = (a: number, b: number) => ts[a].stats().peers.find((p) => p.id === b)!;
      const meshUp = () => ts.every((t) => t.stats().peers.every((p) => p.state === 'connected'));
      await waitFor(meshUp, 'the mesh to connect');

      let nonce = 0;
      const certified = async (at: number, by: number[]) => {
        const sub = hosts[at].submit(standInRequest(group, hosts[at].replica.groupId, ++nonce));
        expect(sub.ok).toBe(true);
        const id = hex(sub.ok ? sub.requestId : new Uint8Array());
        for (const h of by) expect(await hosts[h].waitCertificate(id, 10_000), `node ${h}`).not.toBeNull();
      };
      await certified(0, [0, 2, 3]);

      // Node 1 floods node 2 (which it dials) with PREPAREs in its own name, in window, junk signatures.
      const badPrepare = (to: number, i: number): Uint8Array => {
        const digest = new Uint8Array(32);
        digest[0] = i & 0xff;
        digest[1] = i >> 8;
        const msg: NodeMessage = {
          kind: 'prepare',
          from: FAULTY,
          view: hosts[to].replica.view,
          seq: hosts[to].replica.lastExecuted + 2,
          digest,
          signature: JUNK,
        };
        return encodeMessage(msg);
      };
      const badSigs = (h: number) => hosts[h].replica.misbehaviour.get(FAULTY)?.get('bad-signature') ?? 0;
      const floodAt = performance.now();
      for (let i = 0; i < 300; i++) ts[FAULTY].send(2, badPrepare(2, i));
      await waitFor(() => link(2, FAULTY).quarantines === 1, 'node 2 to quarantine node 1');
      expect(badSigs(2)).toBe(1); // the rest of the flood went with the connection, unchecked
      expect(link(2, FAULTY).quarantinedMs).toBeGreaterThan(0);
      expect(link(2, FAULTY).state).not.toBe('connected');
      expect(warned.some((w) => /peer sent a bad signature/.test(w.msg ?? ''))).toBe(true);
      // What an operator sees: the peer's quarantine in /v1/status's peers and in the metrics.
      const seen = peerStatesOf(ts[2]).find((p) => p.id === FAULTY)!;
      expect(seen.quarantines).toBe(1);
      expect(seen.quarantinedMs).toBeGreaterThan(0);
      metrics2.attach(hosts[2], () => peerStatesOf(ts[2]));
      const text = await metrics2.text();
      const left = Number(/^dropbear_peer_quarantined_seconds\{peer="1"\} (\S+)/m.exec(text)?.[1]);
      expect(left).toBeGreaterThan(0);
      expect(left).toBeLessThanOrEqual(QUARANTINE_MS / 1000);
      expect(text).toMatch(/^dropbear_peer_quarantined_seconds\{peer="3"\} 0$/m);
      expect(text).toMatch(/^dropbear_bad_frames_total\{peer="1"\} 1$/m);

      // While quarantined, node 1 redials node 2 and is refused at its HELLO (not a handshake failure).
      await waitFor(() => ts[2].stats().inbound.quarantined >= 2, 'refused redials of node 1');
      expect(ts[2].stats().inbound.handshakeFailures).toBe(0);
      expect(link(2, FAULTY).state).not.toBe('connected');
      expect(link(FAULTY, 2).connects).toBe(1);
      // The honest three keep certifying, node 2 included.
      await certified(2, [0, 2, 3]);

      // After the quarantine node 1 gets back in, and stays (nothing else it sent was checked).
      // Both ends: node 2 may count the connection a moment before node 1 does.
      await waitFor(
        () => link(2, FAULTY).state === 'connected' && link(FAULTY, 2).state === 'connected',
        'node 1 to reconnect to node 2',
      );
      expect(performance.now() - floodAt).toBeGreaterThanOrEqual(QUARANTINE_MS);
      expect(link(FAULTY, 2).connects).toBe(2);
      expect(badSigs(2)).toBe(1);

      // Node 0 dials node 1: after a bad signature it does not redial until the quarantine is over.
      const dialAt = performance.now();
      ts[FAULTY].send(0, badPrepare(0, 1));
      await waitFor(() => link(0, FAULTY).quarantines === 1, 'node 0 to quarantine node 1');
      expect(link(0, FAULTY).state).not.toBe('connected');
      await waitFor(() => link(0, FAULTY).state === 'connected', 'node 0 to dial node 1 again');
      expect(performance.now() - dialAt).toBeGreaterThanOrEqual(QUARANTINE_MS);
      expect(link(0, FAULTY).connects).toBe(2);

      // A signature node 1 only relays (node 2's RESULTS in a FETCHED answer): dropped too, since a node
      // relays only RESULTS it checked.
      const forged = signResults(
        hosts[3].replica.groupId,
        { node: 2, modelDigest: group.genesis.nodes[2].modelDigest, entries: [] },
        group.keys[2],
      );
      ts[FAULTY].send(
        3,
        encodeMessage({
          kind: 'fetched',
          requests: [],
          results: [{ ...forged, signature: JUNK }],
          prePrepares: [],
        }),
      );
      await waitFor(() => link(3, FAULTY).quarantines === 1, 'node 3 to quarantine node 1');
      expect(badSigs(3)).toBe(1);
      expect(link(3, FAULTY).state).not.toBe('connected');

      // A second offence soon after: twice as long.
      ts[FAULTY].send(2, badPrepare(2, 2));
      await waitFor(() => link(2, FAULTY).quarantines === 2, 'the second quarantine');
      expect(link(2, FAULTY).quarantinedMs).toBeGreaterThan(QUARANTINE_MS);
      await certified(3, [0, 2, 3]);
      // Before 2026-12-07 the bad signature ("peer sent a bad signature") and the quarantine
      // ("transport: peer quarantined") were warnings with no code.
      expect(warned.filter((w) => typeof w.obj.code !== 'string').map((w) => `${w.level}: ${w.msg}`)).toEqual(
        [],
      );
      expect(warned.map((w) => w.obj.code)).toEqual(
        expect.arrayContaining(['PEER_BAD_SIGNATURE', 'PEER_QUARANTINED']),
      );
    } finally {
      for (const h of hosts) h?.stop();
      await Promise.all(ts.map((t) => t.stop()));
      for (const h of hosts) h?.close();
    }
  }, 45_000);
});
