/**
 * The real `dropbear` command, spawned as a child process (node bin/dropbear.mjs, through tsx), in the
 * repository root; a case that checks only a refusal (its status, its error line, no output) runs the same
 * program in this process (runCliInProcess: a spawn costs about a second of CPU). A few refusals stay
 * spawned, so that the binary's own path (main.ts, the exit status a process sees, stderr) stays covered.
 * Output folders live under the OS temp folder and are removed afterwards.
 */
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DropbearCommand, reportAndExit } from '../../src/cli/errors.ts';
import { registerEval } from '../../src/cli/eval.ts';
import { initGroup, loadGroup, registerGroup } from '../../src/cli/group.ts';
import { registerInfer } from '../../src/cli/infer.ts';
import { registerModelUpdate } from '../../src/cli/model-update.ts';
import { registerModels } from '../../src/cli/models.ts';
import { buildProgram } from '../../src/cli/program.ts';
import { registerServeModel } from '../../src/cli/serve-model.ts';
import {
  registerSim,
  runSimCommand,
  type SimCliOptions,
  simOptionsProblem,
  writeOutputs,
} from '../../src/cli/sim.ts';
import { registerStatus } from '../../src/cli/status.ts';
import { registerVerify } from '../../src/cli/verify.ts';
import { importModels } from '../../src/inference/store.ts';
import { type Certificate, DropbearError } from '../../src/protocol/index.ts';
import { simulate } from '../../src/sim/world.ts';
import { MODELS_DIR, VAL_DIR } from '../shared.ts';
import { type Ran, runCli, runCliInProcess } from './run-cli.ts';

const TIMEOUT = 120_000;

function cli(...args: string[]): Promise<Ran> {
  return runCli(args, TIMEOUT - 5_000);
}

/** `dropbear ...args` in this process (see runCliInProcess): for a refusal, nothing that serves or waits. */
const inProcess = (...args: string[]): Promise<Ran> => runCliInProcess(args);

const lines = (s: string) => s.split('\n').filter((l) => l.length > 0);

/** Every file under dir, by path relative to dir, with its bytes. */
function tree(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  (function walk(d: string) {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p), readFileSync(p));
    }
  })(dir);
  return out;
}

let tmp: string;
const dir = (name: string) => join(tmp, name);

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'dropbear-cli-test-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe('dropbear sim', () => {
  let first: Ran;
  beforeAll(async () => {
    first = await cli('sim', '--nodes', '4', '--requests', '30', '--seed', '5', '--out', dir('d1'));
  }, TIMEOUT);

  it('prints one summary line starting with "ok" and writes genesis and 30 certificates', () => {
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(lines(first.stdout)).toHaveLength(1);
    expect(first.stdout).toMatch(/^ok n=4 f=1 seed=5 requests=30 certified=30 .*\n$/);
    const files = [...tree(dir('d1')).keys()];
    expect(files).toContain('genesis.json');
    const certs = files.filter((f) => /^certificates[/\\][0-9a-f]{64}\.json$/.test(f));
    expect(certs).toHaveLength(30);
    expect(files).toHaveLength(31);
  });

  it(
    'is deterministic: the same seed gives the same output and byte-identical files',
    async () => {
      const again = await cli('sim', '--nodes', '4', '--requests', '30', '--seed', '5', '--out', dir('d2'));
      expect(again.code).toBe(0);
      expect(again.stdout).toBe(first.stdout);
      const a = tree(dir('d1'));
      const b = tree(dir('d2'));
      expect([...b.keys()]).toEqual([...a.keys()]);
      for (const [path, bytes] of a) expect(b.get(path)?.equals(bytes), path).toBe(true);
    },
    TIMEOUT,
  );

  it(
    'another seed gives another group and other certificates',
    async () => {
      const other = await cli('sim', '--nodes', '4', '--requests', '30', '--seed', '6', '--out', dir('d6'));
      expect(other.code).toBe(0);
      expect(other.stdout).toMatch(/^ok /);
      expect(other.stdout).not.toBe(first.stdout);
      const a = tree(dir('d1'));
      const b = tree(dir('d6'));
      expect(b.get('genesis.json')?.equals(a.get('genesis.json')!)).toBe(false);
      const shared = [...b.keys()].filter((k) => k !== 'genesis.json' && a.has(k));
      expect(shared).toEqual([]); // request ids depend on the group, so no file name repeats
    },
    TIMEOUT,
  );

  it(
    'n=7 with a node answering wrong labels: ok, and every certificate verifies',
    async () => {
      const d = dir('d7');
      const r = await cli(
        'sim',
        '--nodes',
        '7',
        '--requests',
        '50',
        '--seed',
        '2',
        '--byzantine',
        '3:wrong-results',
        '--out',
        d,
      );
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(lines(r.stdout)).toHaveLength(1);
      expect(r.stdout).toMatch(/^ok n=7 f=2 .*certified=50 .*invalid=0 .*byzantine=3:wrong-results/);
      const v = await cli('verify', '--genesis', join(d, 'genesis.json'), join(d, 'certificates'));
      expect(v.stderr).toBe('');
      expect(v.code).toBe(0);
      expect(v.stdout).toBe('50 certificates valid\n');
    },
    TIMEOUT,
  );
});

/** The .json files anywhere under `dir` (a folder may vanish while it is read: then none). */
function jsonFilesUnder(dir: string): string[] {
  try {
    return readdirSync(dir, { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
}

// sim --out wrote straight into the folder: interrupted half-way, genesis.json and some certificates stayed,
// which looked like the complete output of a shorter run (and a previous run's certificates were gone).
describe('dropbear sim --out is all or nothing', () => {
  for (const sig of ['SIGTERM', 'SIGINT'] as const)
    it(
      `${sig} once the first certificate is written: --out as it was before the run, and the signal ends it`,
      async () => {
        const d = dir(`interrupted-${sig}`);
        // A previous run's output and a file of the user's: both must stay as they were.
        mkdirSync(join(d, 'certificates'), { recursive: true });
        writeFileSync(join(d, 'genesis.json'), '{"previous": "run"}');
        writeFileSync(join(d, 'certificates', `${'a'.repeat(64)}.json`), '{"previous": "certificate"}');
        writeFileSync(join(d, 'notes.txt'), 'mine');
        const before = tree(d);
        // 2000 certificates: writing them takes long enough for the signal to come before the end.
        const r = await runCli(
          ['sim', '--requests', '2000', '--seed', '3', '--out', d],
          TIMEOUT - 5_000,
          (child) => {
            const known = new Set(jsonFilesUnder(d));
            const poll = setInterval(() => {
              if (jsonFilesUnder(d).some((f) => !known.has(f) && /certificates[/\\]/.test(f))) {
                clearInterval(poll);
                child.kill(sig);
              }
            }, 2);
            child.on('close', () => clearInterval(poll));
          },
        );
        // Ended by the signal, not finished before it came.
        expect(r.signal, `${r.stdout}${r.stderr}`).toBe(sig);
        const after = tree(d);
        expect([...after.keys()]).toEqual([...before.keys()]);
        for (const [path, bytes] of before) expect(after.get(path)?.equals(bytes), path).toBe(true);
      },
      TIMEOUT,
    );

  it('a write that fails half-way leaves nothing behind', async () => {
    const d = dir('failed-write');
    mkdirSync(d);
    const r = simulate({ nodes: 4, requests: 10, seed: 4 });
    const certs = [...r.certificates];
    // The sixth certificate cannot be encoded: the write fails after genesis.json and five certificates.
    const broken = new Map([...certs.slice(0, 5), ['f'.repeat(64), {} as Certificate], ...certs.slice(5)]);
    await expect(async () => writeOutputs(d, { ...r, certificates: broken })).rejects.toThrow();
    expect(readdirSync(d)).toEqual([]);
    await writeOutputs(d, r);
    expect(readdirSync(join(d, 'certificates'))).toHaveLength(10);
    expect(readdirSync(d).sort()).toEqual(['certificates', 'genesis.json']);
  });
});

describe('dropbear verify', () => {
  it(
    'accepts the 30 certificates of a run',
    async () => {
      const v = await cli(
        'verify',
        '--genesis',
        join(dir('d1'), 'genesis.json'),
        join(dir('d1'), 'certificates'),
      );
      expect(v.stderr).toBe('');
      expect(v.code).toBe(0);
      expect(v.stdout).toBe('30 certificates valid\n');
    },
    TIMEOUT,
  );

  it(
    'reports exactly one line per invalid file, naming the file and a reason, and exits 1',
    async () => {
      const d = dir('corrupt');
      cpSync(dir('d1'), d, { recursive: true });
      const certDir = join(d, 'certificates');
      const names = readdirSync(certDir).sort();
      const changed = join(certDir, names[3]);
      const notJson = join(certDir, names[17]);
      const cert = JSON.parse(readFileSync(changed, 'utf8'));
      cert.outcome.fee += 1;
      writeFileSync(changed, JSON.stringify(cert, null, 2));
      writeFileSync(notJson, 'this is not a certificate');

      const v = await cli('verify', '--genesis', join(d, 'genesis.json'), certDir);
      expect(v.stderr).toBe('');
      expect(v.code).toBe(1);
      const out = lines(v.stdout);
      expect(out).toHaveLength(3);
      const invalid = out.filter((l) => l.startsWith('INVALID '));
      expect(invalid).toHaveLength(2);
      expect(invalid.filter((l) => l.includes(changed))).toHaveLength(1);
      expect(invalid.filter((l) => l.includes(notJson))).toHaveLength(1);
      expect(invalid.find((l) => l.includes(changed))).toMatch(/: bad-proof: /);
      expect(invalid.find((l) => l.includes(notJson))).toMatch(/: FILE_BAD_JSON: .*not JSON/);
      expect(out[2]).toBe('28 valid, 2 invalid');
      // Status 1 as a process sees it; the stand-in for the binary (runCliInProcess) gives the same.
      expect(await inProcess('verify', '--genesis', join(d, 'genesis.json'), certDir)).toEqual(v);
    },
    TIMEOUT,
  );

  it(
    'refuses a file that repeats a key: JSON.parse would read the last, another reader the first',
    async () => {
      const d = dir('corrupt-duplicate');
      cpSync(dir('d1'), d, { recursive: true });
      const certDir = join(d, 'certificates');
      const file = join(certDir, readdirSync(certDir).sort()[5]);
      const text = JSON.stringify(JSON.parse(readFileSync(file, 'utf8')), null, 2);
      // A made-up decision first, the genuine one after it: JSON.parse alone reads a valid certificate.
      const twice = text.replace(
        '"outcome": {',
        '"outcome": {\n    "decision": { "kind": "label", "label": 999 },',
      );
      expect(twice).not.toBe(text);
      writeFileSync(file, twice);
      const v = await inProcess('verify', '--genesis', join(d, 'genesis.json'), certDir);
      expect(v.code).toBe(1);
      expect(lines(v.stdout)).toEqual([
        expect.stringMatching(/^INVALID .*FILE_BAD_JSON: .*"decision" twice in outcome/),
        '29 valid, 1 invalid',
      ]);
    },
    TIMEOUT,
  );

  it(
    'says which kind of file was given in place of a certificate (it said only "unknown field")',
    async () => {
      const genesis = join(dir('d1'), 'genesis.json');
      const v = await inProcess('verify', '--genesis', genesis, genesis);
      expect(v.code).toBe(1);
      expect(lines(v.stdout)).toEqual([
        expect.stringMatching(
          /^INVALID .*genesis\.json: malformed: .*\(the file looks like a group genesis, not a certificate\)$/,
        ),
        '0 valid, 1 invalid',
      ]);
    },
    TIMEOUT,
  );

  // The JSON.parse message quotes the file's text, newlines included: still one line per file.
  it(
    'keeps one line per invalid file even when the bad file has line breaks',
    async () => {
      const d = dir('corrupt-multiline');
      cpSync(dir('d1'), d, { recursive: true });
      const certDir = join(d, 'certificates');
      const bad = join(certDir, readdirSync(certDir).sort()[0]);
      writeFileSync(bad, 'not\na\ncertificate\n');
      const v = await inProcess('verify', '--genesis', join(d, 'genesis.json'), certDir);
      expect(v.code).toBe(1);
      expect(lines(v.stdout)).toEqual([
        expect.stringMatching(/^INVALID .*FILE_BAD_JSON/),
        '29 valid, 1 invalid',
      ]);
    },
    TIMEOUT,
  );
});

describe('usage errors exit 2 with a message naming the problem', () => {
  /** A plain file, for options that want a folder. */
  const aFile = () => {
    const f = dir('a-file');
    writeFileSync(f, 'not a folder\n');
    return f;
  };
  // These run spawned as well as the `ledger` case below: a DropbearError thrown by a command (main.ts's
  // reportAndExit) and one of commander's own refusals (DropbearCommand's error), as the binary prints them;
  // runCliInProcess must give the same (it stands in for the binary in the other cases).
  const spawned = new Set([
    'a missing genesis file',
    'verify without a certificate (commander: a missing argument)',
  ]);
  const cases: [string, string[] | (() => string[]), RegExp][] = [
    [
      'a Byzantine node out of range',
      ['sim', '--byzantine', '9:wrong-results'],
      /9:wrong-results.*node id.*\[0, 3\]/,
    ],
    ['an unknown behaviour', ['sim', '--byzantine', '1:nonsense'], /1:nonsense.*behaviour must be one of/],
    [
      'more Byzantine nodes than f',
      ['sim', '--nodes', '4', '--byzantine', '1:silent', '--byzantine', '2:silent'],
      /2 Byzantine nodes exceed f = 1/,
    ],
    ['a missing genesis file', ['verify', '--genesis', 'missing.json', 'x'], /cannot read missing\.json/],
    // The error line printed it as it was: a terminal's escape (here "move up") acted on the screen.
    [
      'a file name holding a terminal escape (a space in the error line)',
      ['verify', '--genesis', 'no\u001b[1Ahere.json', 'x'],
      /^error \[[A-Z_]+\]: cannot read no \[1Ahere\.json/,
    ],
    // Commander's own refusals exited 1, which is `verify`'s "some certificates are invalid" and `ledger
    // verify`'s "problems found", with no code and the hint on a second line.
    [
      'verify without a certificate (commander: a missing argument)',
      ['verify', '--genesis', 'g.json'],
      /^error \[CLI_USAGE\]: missing required argument 'cert'; run `dropbear verify --help` for usage\n$/,
    ],
    [
      'ledger verify with --node missing its value (commander: a missing option value)',
      ['ledger', 'verify', 'x.sqlite', '--node'],
      /^error \[CLI_USAGE\]: option '--node <id>' argument missing; run `dropbear ledger verify --help` for usage\n$/,
    ],
    [
      'a worker nice value out of range',
      ['serve-model', `${MODELS_DIR}/mobilenet_v1_0.25_128_quant.onnx`, '--worker-nice', '20'],
      /--worker-nice must be 0\.\.19, got 20/,
    ],
    // Number("") is 0, Number("0x4") 4, Number("abc") NaN: each was taken (src/cli/numbers.ts).
    [
      'an empty --disagreement (it ran with 0)',
      ['sim', '--disagreement', ''],
      /--disagreement must not be empty/,
    ],
    ['a --loss in hex', ['sim', '--loss', '0x0'], /--loss must be a number in \[0, 0\.9\], got "0x0"/],
    [
      'an --f that is not a number (it said n = 4 tolerates at most f = 1)',
      () => [
        'group',
        'init',
        '--dir',
        dir('never-f'),
        '--models',
        'standin,standin,standin,standin',
        '--f',
        'x',
      ],
      /--f must be a whole number ≥ 0, got "x"/,
    ],
    [
      '--nodes in hex (it made a group of 4)',
      () => [
        'group',
        'init',
        '--dir',
        dir('never-nodes'),
        '--models',
        'standin,standin,standin,standin',
        '--nodes',
        '0x4',
      ],
      /--nodes must be a whole number ≥ 1, got "0x4"/,
    ],
    [
      'an eval --seed that is not a number (it ran with seed NaN)',
      ['eval', '--models', 'a,b,c,d', '--seed', 'abc'],
      /--seed must be a whole number ≥ 0, got "abc"/,
    ],
    [
      'an eval --limit in hex',
      ['eval', '--models', 'a,b,c,d', '--limit', '0x2'],
      /--limit must be a whole number ≥ 1, got "0x2"/,
    ],
    [
      'a demo --count with an exponent',
      ['demo', '--count', '1e1', '--images', 'no-such-folder'],
      /--count must be a whole number ≥ 1, got "1e1"/,
    ],
    [
      'an infer --send-to in hex, before the group is read',
      ['infer', '--group', 'no-such-group', '--send-to', '0x2', 'x.jpg'],
      /--send-to is "all" or a node count, not "0x2"/,
    ],
    // Output paths: a bare ENOTDIR/ENOENT without a code, sim's and eval's after the whole run.
    [
      'sim --out naming a file',
      () => ['sim', '--requests', '3', '--out', aFile()],
      /^error \[FILE_UNWRITABLE\]: --out .*a-file is a file, not a folder/,
    ],
    [
      'sim --out below a file',
      () => ['sim', '--requests', '3', '--out', join(aFile(), 'sub')],
      /^error \[FILE_UNWRITABLE\]: --out .*a-file[/\\]sub cannot be made: a folder above it is a file/,
    ],
    [
      'group init --dir below a file',
      () => ['group', 'init', '--dir', join(aFile(), 'g'), '--models', 'standin,standin,standin,standin'],
      /^error \[FILE_UNWRITABLE\]: --dir .*a folder above it is a file/,
    ],
    [
      'eval --json in a folder that does not exist, before any model is read',
      () => ['eval', '--models', 'a,b,c,d', '--json', join(dir('no-such-folder'), 'eval.json')],
      /^error \[FILE_UNWRITABLE\]: --json .*no-such-folder is not a folder; create it first/,
    ],
    [
      'sim --faults --keep naming a file',
      () => ['sim', '--faults', 'random', '--seeds', '1', '--keep', aFile()],
      /^error \[FILE_UNWRITABLE\]: --keep .*a-file is a file, not a folder/,
    ],
    [
      'verify-page --out in a folder that does not exist, before the genesis is read',
      () => ['verify-page', '--genesis', 'missing.json', '--out', join(dir('no-such-folder'), 'v.html')],
      /^error \[FILE_UNWRITABLE\]: --out .*no-such-folder is not a folder; create it first/,
    ],
    // A file of another kind read only `unknown field "outcome"`.
    [
      'verify --genesis given a certificate',
      () => {
        const f = dir('cert-as-genesis.json');
        writeFileSync(
          f,
          JSON.stringify({ version: 2, outcome: {}, leafIndex: 0, path: [], receipt: {}, signatures: [] }),
        );
        return ['verify', '--genesis', f, 'x.json'];
      },
      /^error \[GENESIS_INVALID\]: .*unknown field "outcome" \(the file looks like a certificate, not a group genesis\)/,
    ],
    [
      'verify-page --genesis given a key file',
      () => {
        const f = dir('key-as-genesis.json');
        writeFileSync(f, JSON.stringify({ kind: 'ed25519', publicKey: 'x', seed: '00' }));
        return ['verify-page', '--genesis', f, '--out', dir('v.html')];
      },
      /^error \[GENESIS_INVALID\]: .*\(the file looks like a key file, not a group genesis\)/,
    ],
    // Any JSON was run: `{}` ended with "Cannot read properties of undefined (reading 'length')".
    [
      'sim --schedule with JSON that is not a schedule',
      () => {
        const f = dir('not-a-schedule.json');
        writeFileSync(f, '{"a": 1}\n');
        return ['sim', '--schedule', f];
      },
      /^error \[SCHEDULE_INVALID\]: .*not-a-schedule\.json is not a fault schedule: "seed" must be a whole number/,
    ],
    [
      // It started a group and sent it: a request no node can decode, paid for.
      'demo with a 0-byte image in its folder (FILE_EMPTY before any group starts)',
      () => {
        const d = dir('demo-empty-image');
        mkdirSync(d, { recursive: true });
        writeFileSync(join(d, 'a.jpg'), '');
        return ['demo', '--images', d, '--out', dir('demo-empty-out'), '--once'];
      },
      /^error \[FILE_EMPTY\]: .*a\.jpg is empty; nothing was sent\n$/,
    ],
    [
      'sim --schedule with a genesis',
      () => {
        const f = dir('genesis-as-schedule.json');
        writeFileSync(f, JSON.stringify({ version: 1, name: 'g', f: 0, nodes: [] }));
        return ['sim', '--schedule', f];
      },
      /^error \[SCHEDULE_INVALID\]: .* is not a fault schedule/,
    ],
  ];
  // It printed the help and exited 2 without a word of what was wrong.
  it(
    'a command with subcommands run without one prints its help, then a usage line naming them',
    async () => {
      const r = await cli('ledger');
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^Usage: dropbear ledger /);
      expect(r.stderr).toMatch(
        /\nerror \[CLI_USAGE\]: `dropbear ledger` needs a command \(verify, certificate\); run `dropbear ledger --help` for usage\n$/,
      );
      expect(await inProcess('ledger')).toEqual(r); // the stand-in for the binary gives the same
    },
    TIMEOUT,
  );
  for (const [what, argv, message] of cases)
    it(
      what,
      async () => {
        const args = typeof argv === 'function' ? argv() : argv;
        const r = await (spawned.has(what) ? cli(...args) : inProcess(...args));
        expect(r.code).toBe(2);
        expect(r.stdout).toBe('');
        expect(r.stderr).toMatch(message);
        expect(r.stderr).toMatch(/^error/);
        if (spawned.has(what)) expect(await inProcess(...args)).toEqual(r);
      },
      TIMEOUT,
    );
});

// A parser quotes the text it failed on, line breaks included (`Unexpected token 'h', "hello\nworld" is
// not valid JSON` for a --genesis, --schedule or node config), and onnxruntime ends its messages with one:
// the error came out over several lines, the later ones without the code.
describe('reportAndExit', () => {
  it('writes one line whatever line breaks the message holds, with the code, and exits 2', () => {
    const written: string[] = [];
    const write = vi.spyOn(process.stderr, 'write').mockImplementation((s) => {
      written.push(String(s));
      return true;
    });
    const exit = vi.spyOn(process, 'exit').mockImplementation((code) => {
      throw new Error(`exit ${code}`);
    });
    try {
      for (const e of [
        new DropbearError(
          'FILE_BAD_JSON',
          'g.json is not JSON: Unexpected token \'h\', "hello\nworld\r\n  again" is not valid JSON',
        ),
        new Error('ModelProto does not have a graph.\n'),
      ])
        expect(() => reportAndExit(e)).toThrow('exit 2');
    } finally {
      write.mockRestore();
      exit.mockRestore();
    }
    expect(written).toEqual([
      'error [FILE_BAD_JSON]: g.json is not JSON: Unexpected token \'h\', "hello world again" is not valid JSON\n',
      'error: ModelProto does not have a graph.\n',
    ]);
  });
});

// An empty --home (`--home "$UNSET"`) was the current folder: `models pull` wrote a store into ./models and
// `models list` listed it, where the config file's "home": "" is refused.
describe('--home given empty', () => {
  const commands: string[][] = [
    ['models', 'list'],
    ['models', 'import', 'x.onnx'],
    ['models', 'pull', 'mnist-winml'],
    ['group', 'init', '--dir', 'never-made'],
    ['serve-model', 'm'],
    ['eval', '--models', 'a,b,c,d'],
    ['model-update', '--group', 'g', '--node', '0', '--model', 'm'],
  ];
  for (const argv of commands)
    it(`${argv.slice(0, 2).join(' ')} --home "" is CLI_USAGE before anything runs`, async () => {
      const program = new Command().exitOverride();
      for (const register of [
        registerModels,
        registerGroup,
        registerServeModel,
        registerEval,
        registerModelUpdate,
      ])
        register(program);
      await expect(program.parseAsync([...argv, '--home', ' '], { from: 'user' })).rejects.toMatchObject({
        code: 'CLI_USAGE',
        message: '--home must name a folder, got " "; leave it out for $DROPBEAR_HOME (else ~/.dropbear)',
      });
    });
});

// An empty value (`--out "$UNSET"`) was taken as no option (`sim --out ""` and `infer --out ""` wrote
// nothing, `eval --json ""` no JSON, all with status 0) or as the current folder (`group init --dir ""` made
// a group there, `status --group ""` read it).
describe('an option or argument given empty', () => {
  const cases: [string[], string][] = [
    [['sim', '--requests', '1', '--out', ''], '--out'],
    [['infer', '--group', 'g', '--out', ' ', 'a.jpg'], '--out'],
    [['group', 'init', '--dir', '', '--models', 'a'], '--dir'],
    [['status', '--group', ''], '--group'],
    [['eval', '--models', 'a,b,c,d', '--json', ''], '--json'],
    [['verify', '--genesis', 'g.json', ''], '<cert...>'],
  ];
  for (const [argv, what] of cases)
    it(`${argv.join(' ')}: CLI_USAGE naming ${what}, before the command runs`, async () => {
      const program = new DropbearCommand();
      for (const register of [
        registerSim,
        registerInfer,
        registerGroup,
        registerStatus,
        registerEval,
        registerVerify,
      ])
        register(program);
      await expect(program.parseAsync(argv, { from: 'user' })).rejects.toMatchObject({
        code: 'CLI_USAGE',
        message: expect.stringMatching(new RegExp(`^${what.replace(/[.[\]]/g, '\\$&')} must not be empty`)),
      });
    });
});

// Most commands' help said nothing of their exit status: a script could not tell `verify`'s invalid
// certificates (1) from an unreadable genesis (2), or `status`'s unhealthy node (1) from a bad folder (2).
describe('every command documents its exit status in --help', () => {
  it('says "Exit status:" with 0 and 2 (the error with a code), and 1 where a check can fail', () => {
    const program = buildProgram(); // every command the binary has
    const leaves = (c: Command): Command[] =>
      c.commands.length === 0 ? [c] : c.commands.flatMap((x) => leaves(x));
    const undocumented: string[] = [];
    const oneStatus = new Set([
      'sim',
      'verify',
      'status',
      'ledger verify',
      'ledger certificate',
      'demo',
      'tx',
    ]);
    for (const c of leaves(program)) {
      let out = '';
      c.configureOutput({ writeOut: (t) => (out += t) });
      c.outputHelp();
      const name = `${c.parent?.name() === 'dropbear' ? '' : `${c.parent?.name()} `}${c.name()}`;
      const ok =
        /Exit status: 0 [\s\S]*\b2\b/.test(out) &&
        (!oneStatus.has(name) || /Exit status:[\s\S]*\b1\b/.test(out));
      if (!ok) undocumented.push(name);
    }
    expect(undocumented).toEqual([]);
  });
});

// `dropbear --version` was an unknown option (exit 2).
describe('dropbear --version', () => {
  it("prints package.json's version and exits 0", async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    for (const flag of ['--version', '-V'])
      expect(await inProcess(flag)).toMatchObject({ code: 0, stdout: `${pkg.version}\n`, stderr: '' });
  });
});

// The last of two values was taken without a word: `verify --genesis a.json --genesis b.json` checked the
// certificates against b alone, `infer --out a --out b` wrote to b.
describe('an option given twice', () => {
  const program = () => {
    const p = new DropbearCommand();
    for (const register of [registerSim, registerVerify, registerInfer]) register(p);
    return p;
  };
  it('is CLI_USAGE naming it, before the command runs; a repeatable one (sim --byzantine) is not', async () => {
    await expect(
      program().parseAsync(['verify', '--genesis', 'a.json', '--genesis', 'b.json', 'c.json'], {
        from: 'user',
      }),
    ).rejects.toMatchObject({ code: 'CLI_USAGE', message: '--genesis is given 2 times; give it once' });
    await expect(
      program().parseAsync(['infer', '--group', 'g', '--out', 'a', '--out', 'b', 'x.jpg'], { from: 'user' }),
    ).rejects.toMatchObject({ code: 'CLI_USAGE', message: '--out is given 2 times; give it once' });
    // Past the option checks: the run itself refuses 2 Byzantine nodes with f = 1.
    await expect(
      program().parseAsync(['sim', '--byzantine', '1:silent', '--byzantine', '2:silent'], { from: 'user' }),
    ).rejects.toMatchObject({ code: 'CLI_USAGE', message: '2 Byzantine nodes exceed f = 1' });
  });
});

describe('sim options that do not fit the run', () => {
  const defaults: SimCliOptions = {
    nodes: '4',
    requests: '100',
    seed: '1',
    byzantine: [],
    disagreement: '0.1',
    delay: '1',
    jitter: '0.5',
    loss: '0',
    duplicate: '0',
  };

  // A genesis holds at most 256 nodes (LIMITS.nodes): --nodes 1000000 made a million keys first (a hang),
  // 257 ended in the codec's CODEC_OVERSIZE, and group init left an empty keys/ folder behind.
  it('--nodes above the 256 a genesis holds is CLI_USAGE, for sim and group init, nothing written', async () => {
    await expect(runSimCommand({ ...defaults, nodes: '257' })).rejects.toMatchObject({
      code: 'CLI_USAGE',
      message: '--nodes must be at most 256 (the nodes a genesis holds), got 257',
    });
    const d = dir('too-many-nodes');
    await expect(initGroup({ dir: d, nodes: 257, models: Array(257).fill('standin') })).rejects.toMatchObject(
      {
        code: 'CLI_USAGE',
        message: '--nodes must be at most 256 (the nodes a genesis holds), got 257',
      },
    );
    expect(() => statSync(d)).toThrow();
  });

  // A group's votes are compared by class index: an MNIST model among ImageNet ones voted digits 0-9 as the
  // ImageNet classes 0-9. group init wrote such a genesis without a word.
  it('group init --models of different label sets is CLI_USAGE, nothing written', async () => {
    const home = dir('mixed-labels-home');
    for (const m of ['mnist-winml', 'mobilenet_v1_0.25_128_quant'])
      await importModels(join(MODELS_DIR, `${m}.onnx`), home);
    const d = dir('mixed-labels');
    const models = ['mnist-winml', ...Array(3).fill('mobilenet_v1_0.25_128_quant')];
    await expect(initGroup({ dir: d, nodes: 4, models, home })).rejects.toMatchObject({
      code: 'CLI_USAGE',
      message:
        '--models mixes label sets (mnist-winml: mnist10, mobilenet_v1_0.25_128_quant: imagenet1k); ' +
        "a group compares its nodes' votes by class index, so its models must share one",
    });
    expect(() => statSync(d)).toThrow();
  });

  // No request ends the run at once with nothing certified: it printed FAILED and exited 1, the status
  // of a simulated group that broke a safety or liveness check.
  it('--requests 0 is CLI_USAGE, not a FAILED run', async () => {
    await expect(runSimCommand({ ...defaults, requests: '0' })).rejects.toMatchObject({
      code: 'CLI_USAGE',
      message: '--requests must be a decimal integer ≥ 1, got "0"',
    });
  });

  // Each was ignored without a word: `sim --clock-steps` ran a plain simulation with no clock stepped,
  // `sim --keep DIR` kept nothing, `sim --faults random --nodes 7` ran the schedules' own sizes, and
  // `sim --schedule F --faults random --seeds 1..200` replayed F alone.
  it('refuses an option of another kind of run (the option and the run named), and passes fitting ones', () => {
    expect(simOptionsProblem(['clockSteps'])).toBe(
      '--clock-steps applies to `sim --faults random` only, not to a plain simulation',
    );
    expect(simOptionsProblem(['keep', 'seeds'])).toBe(
      '--keep, --seeds apply to `sim --faults random` only, not to a plain simulation',
    );
    expect(simOptionsProblem(['faults', 'seeds', 'nodes', 'requests'])).toBe(
      '--nodes, --requests do not apply to `sim --faults random` (it takes --seeds, --keep, --sizes, --clock-steps)',
    );
    expect(simOptionsProblem(['schedule', 'faults', 'seeds'])).toBe(
      '--faults, --seeds do not apply to `sim --schedule` (it takes --keep)',
    );
    expect(
      simOptionsProblem(['nodes', 'f', 'requests', 'seed', 'out', 'byzantine', 'batchTimeout']),
    ).toBeNull();
    expect(simOptionsProblem(['faults', 'seeds', 'keep', 'sizes', 'clockSteps'])).toBeNull();
    expect(simOptionsProblem(['schedule', 'keep'])).toBeNull();
  });
});

// status, infer, model-update, group start and demo read group.json through loadGroup: a hand-edited one
// without "genesis" or "nodes", or with a node entry short of a field, ended them with Node's own
// `The "path" argument must be of type string` or `Cannot read properties of undefined (reading 'map')`, no code.
describe('loadGroup: a group.json that is not one', () => {
  it('GROUP_INVALID naming the field, for each way it can be wrong', async () => {
    const d = dir('group-file');
    const written = await initGroup({ dir: d, nodes: 4, models: Array(4).fill('standin') });
    const file = join(d, 'group.json');
    const refusal = (value: unknown): string => {
      writeFileSync(file, JSON.stringify(value));
      try {
        loadGroup(d);
      } catch (e) {
        expect(e).toBeInstanceOf(DropbearError);
        expect((e as DropbearError).code).toBe('GROUP_INVALID');
        return (e as DropbearError).message;
      }
      throw new Error(`accepted ${JSON.stringify(value)}`);
    };
    const node0 = written.nodes[0];
    expect(refusal([])).toMatch(/group\.json.*a JSON object/);
    expect(refusal({ ...written, genesis: undefined })).toMatch(/"genesis" must be a file name/);
    expect(refusal({ ...written, genesis: 5 })).toMatch(/"genesis" must be a file name/);
    expect(refusal({ ...written, client: '' })).toMatch(/"client" must be a file name/);
    expect(refusal({ ...written, nodes: undefined })).toMatch(/"nodes" must be a list/);
    expect(refusal({ ...written, nodes: 5 })).toMatch(/"nodes" must be a list/);
    expect(refusal({ ...written, nodes: [] })).toMatch(/"nodes" must be a list/);
    expect(refusal({ ...written, nodes: [{ id: 0 }] })).toMatch(/"nodes\[0\]\.api" must be/);
    expect(refusal({ ...written, nodes: [null] })).toMatch(/"nodes\[0\]" must be/);
    expect(refusal({ ...written, nodes: [{ ...node0, id: '0' }] })).toMatch(/"nodes\[0\]\.id" must be/);
    expect(refusal({ ...written, nodes: [{ ...node0, apii: 'x' }] })).toMatch(/"nodes\[0\]\.apii" is not/);
    expect(refusal({ ...written, genesiss: 'genesis.json' })).toMatch(
      /"genesiss" is not a group\.json field/,
    );
    // And the file as group init wrote it still loads.
    writeFileSync(file, JSON.stringify(written));
    expect(loadGroup(d).file.nodes).toHaveLength(4);
  });
});

describe('dropbear demo', () => {
  /**
   * Runs the demo, refused before it starts any node, in this process, with the shared models and a home
   * and group folder of its own under `name`.
   */
  async function demo(name: string, ...args: string[]): Promise<Ran> {
    const d = dir(name);
    process.env.DROPBEAR_HOME = join(d, 'home');
    process.env.DROPBEAR_MODELS = MODELS_DIR;
    try {
      return await inProcess('demo', '--once', '--count', '1', '--out', join(d, 'group'), ...args);
    } finally {
      delete process.env.DROPBEAR_HOME;
      delete process.env.DROPBEAR_MODELS;
    }
  }

  // It was taken for a model without a public download and replaced by another (a warning on stderr),
  // so the demo certified, exit 0, with a model nobody asked for.
  it(
    'refuses a misspelt model name (MODEL_NOT_FOUND) before starting any node',
    async () => {
      const r = await demo(
        'demo-typo',
        '--images',
        VAL_DIR,
        '--models',
        'mobilenetv2-12-int9,shufflenet-v2-12-qdq,squeezenet1.1-fp16-winml,mobilenet_v1_0.5_160_quant',
      );
      expect(r.code, r.stderr).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(
        /^error \[MODEL_NOT_FOUND\]: --models: mobilenetv2-12-int9 is neither in the store nor in the catalog/m,
      );
      expect(r.stderr).not.toMatch(/starting 4 nodes|in its place/);
    },
    TIMEOUT,
  );

  // It started four nodes, certified nothing and exited 0.
  it(
    'refuses an image folder without images',
    async () => {
      const empty = dir('demo-no-images');
      mkdirSync(empty);
      writeFileSync(join(empty, 'notes.txt'), 'no images here\n');
      const r = await demo('demo-empty', '--images', empty);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^error \[CLI_USAGE\]: no \.jpg\/\.jpeg\/\.png images in /);
    },
    TIMEOUT,
  );

  it(
    'starts four node processes with four models, prints a table of 5 certified, verified images and exits with --once',
    async () => {
      const d = dir('demo');
      process.env.DROPBEAR_HOME = join(d, 'home');
      process.env.DROPBEAR_MODELS = MODELS_DIR;
      let r: Ran;
      try {
        r = await cli('demo', '--once', '--count', '5', '--images', VAL_DIR, '--out', join(d, 'group'));
      } finally {
        delete process.env.DROPBEAR_HOME;
        delete process.env.DROPBEAR_MODELS;
      }
      expect(r.code, r.stderr).toBe(0);
      const out = r.stdout.split('\n');
      const header = out.findIndex((l) => l.startsWith('image'));
      expect(header).toBeGreaterThanOrEqual(0);
      expect(out[header]).toMatch(/true label.*node 0: .*node 3: .*certified decision\s+verified\s*$/);
      const end = out.indexOf('', header);
      const rows = out.slice(header + 1, end);
      expect(rows).toHaveLength(5);
      for (const row of rows) expect(row.trimEnd()).toMatch(/\.JPEG\s.*\syes$/);
      expect(r.stdout).toMatch(/^5 images: 5 certificates verified offline/m);
      // The money: what the certificates charged left the client's balance and reached the owners.
      const money =
        /^Money: the client paid (\d+) for 5 certificates \(the fees they name; its balance (\d+) → (\d+)\); the owners earned: (.*) \(node 0's ledger at batch \d+\)\.$/m.exec(
          r.stdout,
        );
      expect(money, r.stdout).not.toBeNull();
      const [paid, before, after] = [1, 2, 3].map((i) => Number(money![i]));
      expect(paid).toBeGreaterThanOrEqual(5 * 3); // at least a quorum's votes, fee 1 each
      expect(before - after).toBe(paid);
      const earned = [...money![4].matchAll(/node \d \(owner-\d\) (\d+)/g)].map((m) => Number(m[1]));
      expect(earned).toHaveLength(4);
      expect(earned.reduce((x, y) => x + y, 0)).toBe(paid);
      // And how an owner takes that out (withdrawals, since 2026-12-07).
      expect(r.stdout).toMatch(
        /^An owner takes its earnings out of the group with `npx dropbear withdraw --group \S+ --node N --amount all`/m,
      );
      expect(r.stdout).toMatch(
        /the client takes back what it has not spent with `npx dropbear refund --group \S+ --amount all` \("Refunds"\)\.$/m,
      );
      expect(r.stdout).toMatch(/node 3: http:\/\/127\.0\.0\.1:\d+/);
      // --once stopped every node: the output says so, and how to start the group again, not to ask the
      // stopped nodes for their status (NODE_UNREACHABLE) or open their dashboard.
      expect(r.stdout).toMatch(/^Nodes, stopped on exit \(/m);
      expect(r.stdout).not.toMatch(/npx dropbear status|Dashboard, pinned/);
      expect(r.stdout).toMatch(/\(stopped; npx dropbear group start .+ starts it again\)$/m);
      // --once stopped every node: nothing listens on their ports any more.
      const group = JSON.parse(readFileSync(join(d, 'group', 'group.json'), 'utf8')) as {
        nodes: { api: string }[];
      };
      for (const n of group.nodes) await expect(fetch(`${n.api}/healthz`)).rejects.toThrow();
    },
    TIMEOUT,
  );
});
