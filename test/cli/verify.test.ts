/**
 * `dropbear verify` on folders it cannot list (src/cli/verify.ts): each is one coded failure line
 * (FILE_UNREADABLE), and the other files are still verified. Until 2026-12-06 a folder that passed its
 * stat but could not be listed (removed during the run) was an uncaught error with no code, and nothing
 * was verified. Called in-process (test/cli/cli.test.ts spawns the real command for the rest).
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { writeOutputs } from '../../src/cli/sim.ts';
import { verifyFiles } from '../../src/cli/verify.ts';
import { simulate } from '../../src/sim/world.ts';

vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const statSync = ((p: string, ...rest: unknown[]) => {
    const st = (fs.statSync as (...a: unknown[]) => unknown)(p, ...rest);
    if (String(p).endsWith('vanishing')) fs.rmSync(p, { recursive: true });
    return st;
  }) as typeof fs.statSync;
  return { ...fs, default: { ...fs, statSync }, statSync };
});

let tmp: string;
let genesis: string;
let certs: string;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'dropbear-verify-test-'));
  await writeOutputs(tmp, simulate({ nodes: 4, requests: 3, seed: 5 }));
  genesis = join(tmp, 'genesis.json');
  certs = join(tmp, 'certificates');
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe('dropbear verify: a folder it cannot list', () => {
  it('a folder removed during the run (after its stat, before its listing): FILE_UNREADABLE, the other files verified', () => {
    // statSync (mocked above) removes a folder named "vanishing" once it has statted it: the listing
    // then fails as in the race. Root reads any folder, so permissions cannot make a listing fail here.
    const vanishing = join(tmp, 'vanishing');
    mkdirSync(vanishing);
    writeFileSync(join(vanishing, 'c.json'), '{}');
    const r = verifyFiles(genesis, [vanishing, certs]);
    expect(existsSync(vanishing)).toBe(false);
    expect(r.valid).toBe(3);
    expect(r.failures).toEqual([expect.stringMatching(/vanishing: FILE_UNREADABLE: cannot list .*ENOENT/)]);
  });

  it('a path through a file (not a folder) or one that does not exist: FILE_UNREADABLE, the other files verified', () => {
    const file = join(tmp, 'a-file');
    writeFileSync(file, 'not a folder\n');
    const r = verifyFiles(genesis, [join(file, 'certificates'), join(tmp, 'missing'), certs]);
    expect(r.valid).toBe(3);
    expect(r.failures).toEqual([
      expect.stringMatching(/a-file\/certificates: FILE_UNREADABLE: .*ENOTDIR/),
      expect.stringMatching(/missing: FILE_UNREADABLE: .*ENOENT/),
    ]);
  });
});

describe('dropbear verify: a certificate that quotes text of its own in the failure', () => {
  // A certificate comes from whoever hands it over: a field name with a terminal's escapes (move up, erase
  // the line) went into the INVALID line as it was, and could rewrite what the terminal showed.
  it('its failure line holds no control characters', () => {
    const [first] = readdirSync(certs).filter((f) => f.endsWith('.json'));
    const c = JSON.parse(readFileSync(join(certs, first), 'utf8')) as Record<string, unknown>;
    c['x\u001b[1A\u001b[2K3 certificates valid\r\n\u0007'] = 1;
    const forged = join(tmp, 'forged.json');
    writeFileSync(forged, JSON.stringify(c));
    const r = verifyFiles(genesis, [forged]);
    expect(r.valid).toBe(0);
    expect(r.failures).toHaveLength(1);
    expect(r.failures[0]).toMatch(/forged\.json: malformed: .*unknown field/);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the point of the check
    expect(r.failures[0]).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
  });
});

describe("dropbear verify: a node's answer saved whole", () => {
  // `curl <node>/v1/certificates/<id> > cert.json` saves `{requestId, certificate}`: verify said
  // `malformed: unknown field "requestId"`, where the dashboard's verifier takes that answer as it is.
  it('verifies the certificate in it, refused when the requestId beside it is another request or there is more', () => {
    const [first, second] = readdirSync(certs).filter((f) => f.endsWith('.json'));
    const certificate = JSON.parse(readFileSync(join(certs, first), 'utf8')) as unknown;
    const write = (name: string, v: unknown) => {
      writeFileSync(join(tmp, name), JSON.stringify(v));
      return join(tmp, name);
    };
    const id = first.replace(/\.json$/, '');
    const ok = write('answer.json', { requestId: id, certificate });
    const other = write('other.json', { requestId: second.replace(/\.json$/, ''), certificate });
    const more = write('more.json', { requestId: id, certificate, decision: 'cat' });
    const r = verifyFiles(genesis, [ok, other, more]);
    expect(r.valid).toBe(1);
    expect(r.failures).toEqual([
      expect.stringMatching(
        /other\.json: wrong-request: a valid certificate, but for request [0-9a-f]{64}, not /,
      ),
      expect.stringMatching(/more\.json: malformed: unknown field "decision" beside the certificate/),
    ]);
  });
});
