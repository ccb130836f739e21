/**
 * npm run bench:heal — how long a link stays down after a network partition heals. Four transports
 * (src/node/transport.ts) on loopback; every link of node 3 (the highest id: the others dial it, it wakes
 * them up) goes through a relay that can be cut (bench/lib/relay.ts: nothing crosses, new connections are
 * reset). Each trial cuts node 3 off, waits until both ends of each of its links have given it up (the idle
 * timeout) and then `--partition-ms` plus a random part of a wake-up interval, heals, and times each link
 * until both ends are connected again.
 *
 * Heartbeats are sped up (200 ms, idle timeout 1 s) so that a trial is short; the redial backoff is the
 * default (100 ms … 10 s). `--wake-ms` is the transport's wakeIntervalMs (default: its own, 1 s); a huge
 * one (2147483647) plays the transport before 2026-12-06, whose only wake-up went when the link closed
 * and was lost in the partition. Node 3's wake-ups to the three go out together, so one trial's three
 * links heal about together: their times are not independent.
 *
 * `--trials 4`, `--partition-ms 20000`, `--wake-ms MS`.
 */
import net from 'node:net';
import { Transport } from '../src/node/transport.ts';
import { keyPairFromSeed } from '../src/protocol/crypto.ts';
import type { Genesis } from '../src/protocol/messages.ts';
import { type FlagSpecs, scriptFlags } from './lib/args.ts';
import { flag } from './lib/part.ts';
import { type Relay, startRelay } from './lib/relay.ts';

const FLAGS: FlagSpecs = {
  trials: { kind: 'count', help: 'partitions, one after the other (4)' },
  'partition-ms': { kind: 'ms', help: 'how long a partition lasts once both ends gave the links up (20000)' },
  'wake-ms': { kind: 'ms', help: "the transport's wakeIntervalMs (its default, 1000)" },
};
const given = scriptFlags(process.argv.slice(2), FLAGS, 'npm run bench:heal');
const TRIALS = Number(flag(given, 'trials') ?? 4);
const PARTITION_MS = Number(flag(given, 'partition-ms') ?? 20_000);
const WAKE_MS = flag(given, 'wake-ms') === undefined ? undefined : Number(flag(given, 'wake-ms'));
const HOST = '127.0.0.1';

const keys = Array.from({ length: 4 }, (_, i) => {
  const s = new Uint8Array(32);
  s[0] = 42;
  s[1] = i;
  return keyPairFromSeed(s);
});
const genesis: Genesis = {
  version: 1,
  name: 'bench-heal',
  f: 1,
  nodes: keys.map((k, id) => ({
    id,
    publicKey: k.publicKey,
    address: `tcp://${HOST}:${7000 + id}`,
    owner: `owner ${id}`,
    modelName: `model ${id}`,
    modelDigest: new Uint8Array(32).fill(id),
    fee: 1,
  })),
  policy: { kind: 'top1', minAgree: 1 },
  treasury: keyPairFromSeed(new Uint8Array(32).fill(9)).publicKey,
  balances: [],
  params: { expiryMs: 60_000, maxClockSkewMs: 1000, maxInputBytes: 1 << 20, inputType: 'image/png' },
};

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, HOST, r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(ok: () => boolean): Promise<void> {
  while (!ok()) await sleep(2);
}

async function main(): Promise<void> {
  const ports = [await freePort(), await freePort(), await freePort(), await freePort()];
  // Node i (0..2) dials node 3 through dialVia[i]; node 3 wakes node i up through wakeVia[i].
  const dialVia: Relay[] = [];
  const wakeVia: Relay[] = [];
  for (let i = 0; i < 3; i++) {
    dialVia[i] = await startRelay({ target: { host: HOST, port: ports[3] }, delayMs: 0 });
    wakeVia[i] = await startRelay({ target: { host: HOST, port: ports[i] }, delayMs: 0 });
  }
  const relays = [...dialVia, ...wakeVia];
  const ts = [0, 1, 2, 3].map((id) => {
    const peers = new Map<number, { host: string; port: number }>();
    for (let j = 0; j < 4; j++) {
      if (j === id) continue;
      const port = id === 3 ? wakeVia[j].port : j === 3 ? dialVia[id].port : ports[j];
      peers.set(j, { host: HOST, port });
    }
    return new Transport({
      id,
      genesis,
      key: keys[id],
      listen: { host: HOST, port: ports[id] },
      peers,
      heartbeatMs: 200,
      idleTimeoutMs: 1000,
      wakeIntervalMs: WAKE_MS,
    });
  });
  const stateOf = (i: number, j: number) => ts[i].stats().peers.find((p) => p.id === j)!.state;
  const linked = (i: number) => stateOf(i, 3) === 'connected' && stateOf(3, i) === 'connected';
  try {
    for (const t of ts) await t.start();
    await until(() => [0, 1, 2].every(linked));
    const samples: number[] = [];
    for (let k = 0; k < TRIALS; k++) {
      for (const r of relays) r.cut();
      await until(() =>
        [0, 1, 2].every((i) => stateOf(i, 3) !== 'connected' && stateOf(3, i) !== 'connected'),
      );
      // Plus up to one wake-up interval, at random: node 3's wake-ups run on a timer armed when it gave
      // its links up (just above), so a partition of a whole number of intervals healed just before or
      // just after one of them, every trial alike (0.03 s or 1.00 s), instead of at a random phase as a
      // real partition does.
      await sleep(PARTITION_MS + Math.random() * Math.min(WAKE_MS ?? 1000, 10_000));
      for (const r of relays) r.heal();
      const healed = performance.now();
      const got = await Promise.all(
        [0, 1, 2].map(async (i) => {
          await until(() => linked(i));
          return performance.now() - healed;
        }),
      );
      samples.push(...got);
      console.log(`trial ${k + 1}: ${got.map((ms) => (ms / 1000).toFixed(2)).join(', ')} s`);
    }
    samples.sort((a, b) => a - b);
    const s = (ms: number) => (ms / 1000).toFixed(2);
    console.log(
      `heal → connected, ${samples.length} links (wakeIntervalMs ${WAKE_MS ?? 'default'}, partitions of ` +
        `${PARTITION_MS} ms): min ${s(samples[0])}, median ${s(samples[Math.floor(samples.length / 2)])}, ` +
        `max ${s(samples[samples.length - 1])} s; wake-ups lost in the cuts ${wakeVia.map((r) => r.stats().refused).join(', ')}`,
    );
  } finally {
    await Promise.all(ts.map((t) => t.stop()));
    await Promise.all(relays.map((r) => r.close()));
  }
}

await main();
