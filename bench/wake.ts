/**
 * npm run bench:wake — what one small message costs the process that handles it, by how long that process
 * sat idle before it came. Two processes on loopback TCP: this one sends a 200-byte message and waits for
 * the answer; the other (a child, this same file with `--echo`) answers each message by writing it back,
 * after `--work` per message: `none`, or `verify` (one libsodium Ed25519 check and one SHA-256 of the
 * message, about what a node does for a signed protocol message). Between round trips the sender sleeps
 * a gap (0: back to back), so the echo's thread sleeps that long before each message. Gaps interleaved
 * round by round; CPU (user + system, process.cpuUsage) per message of each process.
 *
 * This is the floor under the "Low load" section of BENCHMARKS.md: a node at low load handles each
 * protocol message after an idle spell, and pays this per message before any work of its own.
 *
 * `--gaps 0,1,5,20,40` (ms), `--n 200` (round trips per gap and round), `--rounds 3`, `--work none|verify`.
 */
import { type ChildProcess, fork } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { keyPairFromSeed, sha256, signTagged, TAGS, verifyTagged } from '../src/protocol/index.ts';
import { type FlagSpecs, scriptFlags } from './lib/args.ts';
import { describeMachine, machine } from './lib/machine.ts';
import { flag } from './lib/part.ts';
import { median } from './lib/stats.ts';

const FLAGS: FlagSpecs = {
  gaps: { kind: 'text', value: 'MS,MS,…', help: 'idle gaps between round trips, ms (0,1,5,20,40)' },
  n: { kind: 'count', help: 'round trips per gap and round (200)' },
  rounds: { kind: 'count', help: 'interleaved rounds (3)' },
  work: { kind: 'choice', choices: ['none', 'verify'], help: 'work per message at the echo (none)' },
  echo: { kind: 'switch', help: '(internal) run as the echo process' },
};
const given = scriptFlags(process.argv.slice(2), FLAGS, 'npm run bench:wake');
const WORK = flag(given, 'work') ?? 'none';
const MESSAGE_BYTES = 200;

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** The echo process: answers each message with itself, after the chosen work; reports its CPU when asked. */
function runEcho(): void {
  const key = keyPairFromSeed(new Uint8Array(32).fill(3));
  const groupId = new Uint8Array(32);
  const sig = signTagged(TAGS.prepare, groupId, new Uint8Array(MESSAGE_BYTES), key);
  const srv = net.createServer((s) => {
    s.setNoDelay(true);
    let pending = 0;
    s.on('data', (d) => {
      pending += d.length;
      // One answer per whole message (TCP may split or join them; at one in flight it rarely does).
      while (pending >= MESSAGE_BYTES) {
        pending -= MESSAGE_BYTES;
        if (WORK === 'verify') {
          sha256(d.subarray(0, Math.min(d.length, 100)));
          if (!verifyTagged(TAGS.prepare, groupId, new Uint8Array(MESSAGE_BYTES), sig, key.publicKey))
            throw new Error('the reference signature did not verify');
        }
        s.write(d.subarray(0, MESSAGE_BYTES));
      }
    });
  });
  srv.listen(0, '127.0.0.1', () => {
    const a = srv.address();
    process.send?.({ port: typeof a === 'object' && a ? a.port : 0 });
  });
  process.on('message', (m) => {
    if (m === 'cpu') process.send?.({ cpu: cpuMs() });
    if (m === 'stop') srv.close(() => process.exit(0));
  });
}

function once<T>(child: ChildProcess, pick: (m: unknown) => T | undefined): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: unknown) => {
      const v = pick(m);
      if (v === undefined) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(v);
    };
    const onExit = (code: number | null) => reject(new Error(`the echo process exited (${code})`));
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

async function runSender(): Promise<void> {
  const gaps = (flag(given, 'gaps') ?? '0,1,5,20,40').split(',').map(Number);
  if (gaps.some((g) => !Number.isFinite(g) || g < 0)) {
    console.error('--gaps takes numbers ≥ 0 (ms), comma-separated');
    process.exit(2);
  }
  const n = Number(flag(given, 'n') ?? 200);
  const rounds = Number(flag(given, 'rounds') ?? 3);
  const started = machine();
  const child = fork(fileURLToPath(import.meta.url), ['--echo', `--work=${WORK}`], {
    execArgv: process.execArgv,
  });
  try {
    const port = await once(child, (m) => (m as { port?: number }).port);
    const echoCpu = async () => {
      const p = once(child, (m) => (m as { cpu?: number }).cpu);
      child.send('cpu');
      return p;
    };
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    await new Promise<void>((r, j) => socket.once('connect', r).once('error', j));
    const msg = Buffer.alloc(MESSAGE_BYTES, 7);
    let got = 0;
    let wake: (() => void) | null = null;
    socket.on('data', (d) => {
      got += d.length;
      if (got >= MESSAGE_BYTES && wake) {
        got -= MESSAGE_BYTES;
        const w = wake;
        wake = null;
        w();
      }
    });
    const roundTrip = () =>
      new Promise<void>((r) => {
        wake = r;
        socket.write(msg);
      });
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    for (let i = 0; i < 100; i++) await roundTrip(); // warm both processes up
    const echoUs = new Map<number, number[]>(gaps.map((g) => [g, []]));
    const senderUs = new Map<number, number[]>(gaps.map((g) => [g, []]));
    for (let round = 0; round < rounds; round++) {
      for (const gap of round % 2 ? [...gaps].reverse() : gaps) {
        const e0 = await echoCpu();
        const s0 = cpuMs();
        for (let i = 0; i < n; i++) {
          if (gap > 0) await sleep(gap);
          await roundTrip();
        }
        const s1 = cpuMs();
        const e1 = await echoCpu();
        echoUs.get(gap)!.push(((e1 - e0) * 1000) / n);
        senderUs.get(gap)!.push(((s1 - s0) * 1000) / n);
        console.log(
          `[wake] round ${round + 1}, gap ${gap} ms: echo ${(((e1 - e0) * 1000) / n).toFixed(0)} µs, sender ${(((s1 - s0) * 1000) / n).toFixed(0)} µs per message`,
        );
      }
    }
    socket.destroy();
    const base = median(echoUs.get(gaps[0])!);
    console.log(`\nMachine: ${describeMachine(started)}.`);
    console.log(
      `Command: \`npm run bench:wake -- --gaps ${gaps.join(',')} --n ${n} --rounds ${rounds} --work ${WORK}\`. CPU µs per message (user + system), median and min–max over ${rounds} round(s); the echo's thread sleeps the gap before each message.\n`,
    );
    console.log(
      '| gap before each message | echo: CPU µs per message | × back to back | sender: CPU µs per round trip |',
    );
    console.log('| ---: | ---: | ---: | ---: |');
    for (const g of gaps) {
      const e = echoUs.get(g)!;
      const s = senderUs.get(g)!;
      const range = (xs: number[]) => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;
      console.log(
        `| ${g} ms | ${median(e).toFixed(0)} (${range(e)}) | ${(median(e) / base).toFixed(2)} | ${median(s).toFixed(0)} (${range(s)}) |`,
      );
    }
  } finally {
    child.send('stop');
    const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
    await new Promise((r) => child.once('exit', r));
    clearTimeout(timer);
  }
}

if (given.includes('--echo')) runEcho();
else await runSender();
