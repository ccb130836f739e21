/**
 * The e2e part's coalescing pieces: sameTurn (one call of `run` per event-loop turn) and the OIP body and
 * answer of several images at once.
 */
import { describe, expect, it } from 'vitest';
import { oipImagesBody, oipTop1, oipTop1s, type RawResponse } from '../../bench/lib/extra.ts';
import { sameTurn } from '../../bench/lib/load.ts';

describe('sameTurn', () => {
  it('one run per turn, with every item of the turn in call order; each call gets its own answer', async () => {
    const runs: number[][] = [];
    const twice = sameTurn(async (xs: number[]) => {
      runs.push(xs);
      return xs.map((x) => 2 * x);
    });
    const first = await Promise.all([twice(1), twice(2), twice(3)]);
    const later = await twice(4);
    expect(first).toEqual([2, 4, 6]);
    expect(later).toBe(8);
    expect(runs).toEqual([[1, 2, 3], [4]]);
  });

  it('a failed run fails every call of its turn and no other; missing answers fail their calls', async () => {
    const flaky = sameTurn(async (xs: string[]) => {
      if (xs.includes('bad')) throw new Error('refused');
      return xs.slice(0, 1);
    });
    const turn1 = await Promise.allSettled([flaky('a'), flaky('bad')]);
    expect(turn1.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    const turn2 = await Promise.allSettled([flaky('x'), flaky('y')]);
    expect(turn2[0]).toEqual({ status: 'fulfilled', value: 'x' });
    expect(turn2[1].status).toBe('rejected');
    // A run that throws before returning a promise fails its calls the same way.
    const throws = sameTurn((_: number[]): Promise<number[]> => {
      throw new Error('sync');
    });
    await expect(throws(1)).rejects.toThrow('sync');
  });
});

describe('OIP bodies and answers of several images', () => {
  it('a BYTES [N] input as binary data: the JSON header, then each image after its 4-byte length', () => {
    const imgs = [Uint8Array.of(1, 2, 3), Uint8Array.of(9), new Uint8Array(0)];
    const { headers, body } = oipImagesBody('data', imgs);
    const head = Number(headers['inference-header-content-length']);
    const json = JSON.parse(body.subarray(0, head).toString('utf8'));
    expect(json.inputs[0]).toMatchObject({ name: 'data', datatype: 'BYTES', shape: [3] });
    expect(json.inputs[0].parameters.binary_data_size).toBe(body.length - head);
    const got: number[][] = [];
    for (let at = head; at < body.length; ) {
      const n = body.readUInt32LE(at);
      got.push([...body.subarray(at + 4, at + 4 + n)]);
      at += 4 + n;
    }
    expect(got).toEqual([[1, 2, 3], [9], []]);
  });

  const answer = (rows: number[][], status = 200, said = rows.length): RawResponse => {
    const json = Buffer.from(
      JSON.stringify({ outputs: [{ name: 'out', datatype: 'FP32', shape: [said, rows[0].length] }] }),
    );
    const scores = Buffer.alloc(rows.length * rows[0].length * 4);
    rows.flat().forEach((v, i) => {
      scores.writeFloatLE(v, i * 4);
    });
    return {
      status,
      headers: { 'inference-header-content-length': String(json.length) },
      body: Buffer.concat([json, scores]),
    } as unknown as RawResponse;
  };

  it('the top-1 of each row (ties to the lowest index); a wrong row count or a failed call throws', () => {
    const r = answer([
      [0.1, 0.7, 0.2],
      [0.5, 0.1, 0.5],
    ]);
    expect(oipTop1s(r, 2)).toEqual([1, 0]);
    expect(oipTop1(answer([[0, 0, 3]]))).toBe(2);
    expect(() => oipTop1s(r, 4)).toThrow(/rows of FP32/);
    // Four rows of two scores divide as evenly as two of four: the header's shape tells them apart.
    const four = answer([
      [1, 0],
      [0, 1],
      [1, 0],
      [0, 1],
    ]);
    expect(oipTop1s(four, 4)).toEqual([0, 1, 0, 1]);
    expect(() => oipTop1s(four, 2)).toThrow(/rows of FP32/);
    expect(() => oipTop1s(answer([[1, 2]], 200, 3), 1)).toThrow(/rows of FP32/);
    expect(() => oipTop1s(answer([[1]], 500), 1)).toThrow(/500/);
  });
});
